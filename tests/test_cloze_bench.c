/* The routing benchmark's items (bench/routing/build_cloze.py, README there):
 * the committed calibration and test splits rebuild byte for byte from
 * valid.txt, and the dense calibration set the routers are fitted on
 * (--dense: every admissible target of the calibration stories) keeps the
 * README's rules, checked here against valid.txt itself: only calibration
 * stories (index mod 5 < 2), no item of the test split, every item of the
 * calibration split among its items, each answer a word of its passage whose
 * text continues with " " + answer and a non-letter. */
#include <criterion/criterion.h>

#include <cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

typedef struct {
    char *prompt, *answer;
    int story;
} cloze_item;

typedef struct {
    cloze_item *v;
    int n;
} cloze_set;

static cloze_set load_items(const char *path) {
    size_t len = 0;
    char *text = tu_slurp(path, &len);
    cr_assert(text, "cannot read %s", path);
    cloze_set s = {0};
    int cap = 0, line = 0;
    for (char *p = text, *nl; p < text + len; p = nl + 1) {
        nl = strchr(p, '\n');
        cr_assert(nl, "%s: the last line has no newline", path);
        *nl = 0;
        line++;
        cJSON *o = cJSON_Parse(p);
        cr_assert(o, "%s:%d: not JSON", path, line);
        const cJSON *pr = cJSON_GetObjectItem(o, "prompt"), *an = cJSON_GetObjectItem(o, "answer"),
                    *st = cJSON_GetObjectItem(o, "story");
        cr_assert(cJSON_IsString(pr) && cJSON_IsString(an) && cJSON_IsNumber(st), "%s:%d: fields", path, line);
        if (s.n == cap) {
            cap = cap ? 2 * cap : 1024;
            s.v = realloc(s.v, sizeof *s.v * (size_t)cap);
            cr_assert(s.v);
        }
        s.v[s.n++] = (cloze_item){strdup(pr->valuestring), strdup(an->valuestring), st->valueint};
        cJSON_Delete(o);
    }
    free(text);
    return s;
}

static void free_items(cloze_set *s) {
    for (int i = 0; i < s->n; i++) free(s->v[i].prompt), free(s->v[i].answer);
    free(s->v);
}

/* "prompt\x01answer": one key per item, for sorting and lookups */
static char **keys_of(const cloze_set *s) {
    char **k = malloc(sizeof *k * (size_t)s->n);
    cr_assert(k);
    for (int i = 0; i < s->n; i++) {
        size_t a = strlen(s->v[i].prompt), b = strlen(s->v[i].answer);
        k[i] = malloc(a + b + 2);
        cr_assert(k[i]);
        memcpy(k[i], s->v[i].prompt, a);
        k[i][a] = 1;
        memcpy(k[i] + a + 1, s->v[i].answer, b + 1);
    }
    return k;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* the answer occurs in the prompt as a whole word (letters on neither side) */
static int has_word(const char *text, const char *w) {
    size_t n = strlen(w);
    for (const char *p = strstr(text, w); p; p = strstr(p + 1, w))
        if ((p == text || !isalpha((unsigned char)p[-1])) && !isalpha((unsigned char)p[n])) return 1;
    return 0;
}

/* Where valid.txt holds prompt + " " + answer followed by a non-letter (or its
 * end), searched from `from` onwards; -1 if nowhere there. */
static long continues_with(const char *valid, long from, const char *prompt, const char *answer) {
    size_t a = strlen(prompt), b = strlen(answer);
    char *want = malloc(a + b + 2);
    cr_assert(want);
    snprintf(want, a + b + 2, "%s %s", prompt, answer);
    long at = -1;
    for (const char *p = strstr(valid + from, want); p && at < 0; p = strstr(p + 1, want))
        if (!isalpha((unsigned char)p[a + 1 + b])) at = p - valid;
    free(want);
    return at;
}

Test(cloze_bench, splits_rebuild_and_the_dense_set_keeps_to_the_calibration_stories, .timeout = 300) {
    char vbuf[512], cmd[4096];
    const char *valid_path = tu_data("tinystories/valid.txt", vbuf, sizeof vbuf);
    char dense_path[] = "/tmp/duet-cloze-dense-XXXXXX";
    int fd = mkstemp(dense_path);
    cr_assert(fd >= 0);
    close(fd);
    snprintf(cmd, sizeof cmd,
             "python3 %s/bench/routing/build_cloze.py --check --input %s --outdir %s/bench/data --dense %s >/dev/null",
             DUET_SRC_DIR, valid_path, DUET_SRC_DIR, dense_path);
    cr_assert_eq(system(cmd), 0, "%s: the committed splits differ from a rebuild (or the build failed)", cmd);

    char *valid = tu_slurp(valid_path, NULL);
    cr_assert(valid);
    char path[1024];
    snprintf(path, sizeof path, "%s/bench/data/cloze-calib.jsonl", DUET_SRC_DIR);
    cloze_set calib = load_items(path);
    snprintf(path, sizeof path, "%s/bench/data/cloze-test.jsonl", DUET_SRC_DIR);
    cloze_set test = load_items(path);
    cloze_set dense = load_items(dense_path);
    unlink(dense_path);
    cr_assert_gt(dense.n, 4 * calib.n, "the dense set has %d items, the calibration split %d", dense.n, calib.n);

    int max_story = 0;
    for (int i = 0; i < test.n; i++) max_story = test.v[i].story > max_story ? test.v[i].story : max_story;
    for (int i = 0; i < dense.n; i++) max_story = dense.v[i].story > max_story ? dense.v[i].story : max_story;
    unsigned char *in_test = calloc((size_t)max_story + 1, 1);
    cr_assert(in_test);
    for (int i = 0; i < test.n; i++) in_test[test.v[i].story] = 1;

    long last = 0;
    for (int i = 0; i < dense.n; i++) {
        const cloze_item *it = &dense.v[i];
        cr_assert_lt(it->story % 5, 2, "dense item %d: story %d is not a calibration story", i, it->story);
        cr_assert(!in_test[it->story], "dense item %d: story %d has items in the test split", i, it->story);
        size_t n = strlen(it->answer);
        cr_assert_geq(n, 3, "dense item %d: answer \"%s\"", i, it->answer);
        for (size_t k = 0; k < n; k++) cr_assert(islower((unsigned char)it->answer[k]), "dense item %d", i);
        cr_assert(has_word(it->prompt, it->answer), "dense item %d: \"%s\" is not earlier in its passage", i,
                  it->answer);
        /* items come in story order: look near the previous one first (the whole file after) */
        long at = continues_with(valid, last > 4096 ? last - 4096 : 0, it->prompt, it->answer);
        if (at < 0) at = continues_with(valid, 0, it->prompt, it->answer);
        cr_assert_geq(at, 0, "dense item %d: valid.txt does not continue its passage with \" %s\"", i, it->answer);
        last = at;
    }

    /* the calibration split is among the dense items; no test item is */
    char **dk = keys_of(&dense), **ck = keys_of(&calib), **tk = keys_of(&test);
    qsort(dk, (size_t)dense.n, sizeof *dk, cmp_str);
    for (int i = 0; i < calib.n; i++)
        cr_assert(bsearch(&ck[i], dk, (size_t)dense.n, sizeof *dk, cmp_str),
                  "calibration item %d (\"%s\") is not in the dense set", i, calib.v[i].answer);
    for (int i = 0; i < test.n; i++)
        cr_assert(!bsearch(&tk[i], dk, (size_t)dense.n, sizeof *dk, cmp_str), "test item %d is in the dense set", i);

    for (int i = 0; i < dense.n; i++) free(dk[i]);
    for (int i = 0; i < calib.n; i++) free(ck[i]);
    for (int i = 0; i < test.n; i++) free(tk[i]);
    free(dk), free(ck), free(tk), free(in_test), free(valid);
    free_items(&calib), free_items(&test), free_items(&dense);
}
