/* duet eval and duet route-fit as a user runs them, on 8 cloze items and the
 * shipped models (slm, llm):
 *  - a malformed line of the items is an error naming its line (exit 1) and
 *    leaves no --dump file behind;
 *  - --json prints exactly one JSON object with the documented fields;
 *  - the accuracy of --strategy slm and llm equals a count made here from
 *    `duet generate` runs item by item (an independent reference: one
 *    request at a time, no driver batching, the scoring rule re-implemented);
 *  - the collaborating strategies at their extremes are exactly one model:
 *    route --threshold -inf/+inf, cascade --threshold +inf/-inf and defer
 *    --eta 2/0 give LLM share 1/0 and, item by item, the LLM's/SLM's
 *    correctness;
 *  - route-fit labels items by running both models (SLM wrong, LLM right),
 *    fits from a labelled file without models, and eval reads its router. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define LLM DUET_SRC_DIR "/models/llm.gguf"
#define SLM DUET_SRC_DIR "/models/slm.gguf"
#define MAX_ITEMS 8
/* sanitizer builds run the models 10-50x slower: the first 4 items there */
#define N_ITEMS (SANITIZED ? 4 : MAX_ITEMS)

/* Items of bench/data/cloze-test.jsonl: both models right, both wrong, only one right. */
static const struct {
    const char *prompt, *answer;
} items[MAX_ITEMS] = {
    {"once upon a time, there was a thoughtful girl named sue. sue loved to help her mom around the house. one day, "
     "her mom asked her to wipe the table after they ate their lunch. sue was happy to help.\n\nas",
     "sue"},
    {"once upon a time, there was a thoughtful girl named sue. sue loved to help her mom around the house. one day, "
     "her mom asked her to wipe the table after they ate their lunch. sue was happy to help.\n\nas sue was wiping the "
     "table, she saw a pretty candle on the window sill. the candle was her mom's favorite. sue wanted to do something "
     "nice for her mom, so she said, \"mom, can i light the candle for you?\" her",
     "mom"},
    {"once upon a time, there was a big dog named max. max had a red collar that he wore every day. he loved to play "
     "and run in the park with his friends.\n\none day, max saw a cat on a tree. he wanted to be friends with the cat. "
     "so, max tried to stretch up to reach the cat. but he was not tall enough. he tried again and again, but he just "
     "couldn't reach the",
     "cat"},
    {"she loved to help her mom in the garden. they planted seeds and watched them grow. lily liked to see the plants "
     "get big and strong. the sun and rain helped the plants grow too.\n\none day, lily's mom said it was time to pick "
     "the vegetables for dinner. lily was very excited! they picked tomatoes, carrots, and peas. lily's mom told her "
     "that the vegetables would make a yummy dinner. lily couldn't wait to eat them.\n\nat dinner time, lily sat in "
     "her chair. it was uncomfortable, but she didn't care. she wanted to eat the vegetables they picked from the "
     "garden.",
     "lily"},
    {"once upon a time, there was a hairy dog named spot. spot had a toy skull that he loved to play with. he would "
     "carry it around in his mouth and play fetch with it.\n\none day, spot's owner, a little girl named lily, did not "
     "permit spot to play with his skull. she was afraid that he might break it. spot was sad and missed his favorite "
     "toy.\n\nlater,",
     "lily"},
    {"once upon a time, there was a big line of ants. they liked to march all day long. they marched up and down, left "
     "and right. they loved marching together.\n\none day, they found a different thing. it was a big nail. the",
     "ants"},
    {"once upon a time, there was a little girl named mia. mia loved her room because it had a big bookshelf. the "
     "bookshelf was full of colorful books. mia liked to read these books every day.\n\none day, mia was very tired. "
     "she wanted to find a book to read before she went to bed.",
     "mia"},
    {"once upon a time, there was a little boy named timmy. timmy loved to play with his ball. one day, timmy went to "
     "play outside and his ball rolled away from him. timmy tried to get his ball back, but it rolled down a big hill "
     "and into a well.\n\ntimmy was sad because he thought he would never see his ball again. but then,",
     "timmy"},
};

static char dir[256];
static char items_path[300];

/* A fresh folder with items.jsonl (one object per line, an extra field, a blank line at the end). */
static void setup_items(void) {
    snprintf(dir, sizeof dir, "/tmp/duet_eval_cli_XXXXXX");
    cr_assert(mkdtemp(dir), "mkdtemp");
    snprintf(items_path, sizeof items_path, "%s/items.jsonl", dir);
    FILE *f = fopen(items_path, "w");
    cr_assert(f);
    for (int i = 0; i < N_ITEMS; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "prompt", items[i].prompt);
        cJSON_AddStringToObject(o, "answer", items[i].answer);
        char id[16];
        snprintf(id, sizeof id, "it%d", i);
        cJSON_AddStringToObject(o, "id", id);
        cJSON_AddNumberToObject(o, "story", i); /* ignored */
        char *s = cJSON_PrintUnformatted(o);
        fprintf(f, "%s\n", s);
        free(s);
        cJSON_Delete(o);
    }
    fprintf(f, "\n");
    fclose(f);
}

static void cleanup(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Runs duet with args (stderr dropped); the stdout must be exactly one JSON object. */
static cJSON *run_json(const char *args) {
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s 2>/dev/null", args);
    int rc = tu_run_duet(cmd, &out);
    cr_assert_eq(rc, 0, "duet %s -> exit %d: %s", args, rc, out ? out : "");
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(out, &end, 0);
    cr_assert(j && cJSON_IsObject(j), "not a JSON object: %s", out);
    while (end && isspace((unsigned char)*end)) end++;
    cr_assert(end && !*end, "more than one JSON object on stdout: %s", out);
    free(out);
    return j;
}

static double num(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    cr_assert(cJSON_IsNumber(v), "no number \"%s\"", key);
    return v->valuedouble;
}

/* Per-item correctness from a --dump file, in item order. */
static void read_dump(const char *path, int correct[MAX_ITEMS]) {
    char *text = tu_slurp(path, NULL);
    cr_assert(text, "no dump %s", path);
    int n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        cr_assert(o && n < N_ITEMS, "bad dump line %d: %s", n + 1, line);
        char id[16];
        snprintf(id, sizeof id, "it%d", n);
        cr_assert_str_eq(cJSON_GetObjectItem(o, "id")->valuestring, id);
        correct[n++] = cJSON_IsTrue(cJSON_GetObjectItem(o, "correct"));
        cJSON_Delete(o);
    }
    cr_assert_eq(n, N_ITEMS, "%d records in %s", n, path);
    free(text);
}

/* eval with a strategy; returns its JSON and fills correct[] from its dump. */
static cJSON *eval(const char *strategy, int correct[MAX_ITEMS]) {
    char args[2048], dump[320];
    snprintf(dump, sizeof dump, "%s/dump.jsonl", dir);
    unlink(dump);
    snprintf(args, sizeof args, "eval -m %s --slm %s -f %s %s -t 2 --json --dump %s", LLM, SLM, items_path, strategy,
             dump);
    cJSON *j = run_json(args);
    read_dump(dump, correct);
    cr_assert_eq((int)num(j, "n_items"), N_ITEMS);
    return j;
}

/* The scoring rule of bench/routing/README.md, written again: " " + answer, then a
 * non-letter, or the end of a generation that stopped. */
static int ref_correct(const char *text, const char *answer, int stopped) {
    char want[64];
    snprintf(want, sizeof want, " %s", answer);
    size_t n = strlen(want);
    if (strncmp(text, want, n)) return 0;
    unsigned char c = (unsigned char)text[n];
    return c == 0 ? stopped : !(isalpha(c) || c >= 0x80);
}

/* Each item through `duet generate` alone, greedy: 16 new tokens decide every answer
 * (as eval_cloze.py's second try does). */
static int brute_force(const char *model, int correct[MAX_ITEMS]) {
    int total = 0;
    for (int i = 0; i < N_ITEMS; i++) {
        char prompt[320], args[1024];
        snprintf(prompt, sizeof prompt, "%s/prompt.txt", dir);
        FILE *f = fopen(prompt, "w");
        cr_assert(f);
        fputs(items[i].prompt, f);
        fclose(f);
        snprintf(args, sizeof args, "generate -m %s -f %s -n 16 --temp 0 -t 2 --json", model, prompt);
        cJSON *j = run_json(args);
        const cJSON *t = cJSON_GetObjectItem(j, "text"), *fin = cJSON_GetObjectItem(j, "finish_reason");
        cr_assert(cJSON_IsString(t) && cJSON_IsString(fin));
        correct[i] = ref_correct(t->valuestring, items[i].answer, !strcmp(fin->valuestring, "stop"));
        total += correct[i];
        cJSON_Delete(j);
    }
    return total;
}

static void assert_same(const int a[MAX_ITEMS], const int b[MAX_ITEMS], const char *what) {
    for (int i = 0; i < N_ITEMS; i++) cr_assert_eq(a[i], b[i], "%s: item %d differs (%d vs %d)", what, i, a[i], b[i]);
}

Test(eval_cli, malformed_line_names_its_line_and_writes_nothing, .timeout = 60) {
    setup_items();
    const char *bad[] = {
        "{\"prompt\": \"once upon a time\", \"answer\": \"lily\"}\n\n{\"prompt\": \"x\", \"answer\": \n",
        "{\"prompt\": \"once upon a time\", \"answer\": \"lily\"}\n{\"prompt\": \"x\"}\n{\"prompt\": \"y\", \"answer\": \"z\"}\n",
        "{\"prompt\": \"once upon a time\", \"answer\": \"lily\"}\n[1, 2]\n",
        "{\"prompt\": \"a\", \"answer\": \"b\"}\n{\"prompt\": \"a\", \"answer\": \"b\"}\n{\"prompt\": 3, \"answer\": \"b\"}\n",
        /* finite as a double, infinite as a float (fuzz/fuzz_eval_items.c found it) */
        "{\"prompt\": \"a\", \"answer\": \"b\"}\n{\"prompt\": \"a\", \"answer\": \"b\", \"hidden\": [1, -1e300]}\n",
    };
    const int line[] = {3, 2, 2, 3, 2};
    for (int k = 0; k < 5; k++) {
        char path[320], dump[320], args[1200], *out = NULL;
        snprintf(path, sizeof path, "%s/bad.jsonl", dir);
        snprintf(dump, sizeof dump, "%s/bad-dump.jsonl", dir);
        FILE *f = fopen(path, "w");
        cr_assert(f);
        fputs(bad[k], f);
        fclose(f);
        snprintf(args, sizeof args, "eval -m %s --slm %s -f %s --strategy llm -t 2 --json --dump %s 2>&1", LLM, SLM,
                 path, dump);
        int rc = tu_run_duet(args, &out);
        cr_assert_eq(rc, 1, "case %d: exit %d: %s", k, rc, out);
        char want[340];
        snprintf(want, sizeof want, "%s:%d:", path, line[k]);
        cr_assert(strstr(out, want), "case %d: the error does not name line %d: %s", k, line[k], out);
        cr_assert(!strchr(out, '{'), "case %d: a JSON object was printed: %s", k, out);
        cr_assert(access(dump, F_OK) != 0, "case %d: a dump was written", k);
        free(out);
    }
    cleanup();
}

Test(eval_cli, json_is_one_object_with_the_fields, .timeout = 120) {
    setup_items();
    int c[MAX_ITEMS];
    cJSON *j = eval("--strategy route --signal prompt_nll --threshold 2.5", c);
    const char *keys[] = {"accuracy", "llm_share", "llm_token_share", "n_items", "slm_s", "llm_s", "wall_s"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        double v = num(j, keys[k]);
        cr_assert(v >= 0 && isfinite(v), "%s = %g", keys[k], v);
    }
    cr_assert(num(j, "accuracy") <= 1 && num(j, "llm_share") <= 1 && num(j, "llm_token_share") <= 1);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "strategy")->valuestring, "route");
    const cJSON *p = cJSON_GetObjectItem(j, "params");
    cr_assert(cJSON_IsObject(p));
    cr_assert_float_eq(num(p, "threshold"), 2.5, 1e-6);
    cr_assert_str_eq(cJSON_GetObjectItem(p, "signal")->valuestring, "prompt_nll");
    int n_ok = 0;
    for (int i = 0; i < N_ITEMS; i++) n_ok += c[i];
    cr_assert_float_eq(num(j, "accuracy"), (double)n_ok / N_ITEMS, 1e-12, "the accuracy is not the dump's");
    cJSON_Delete(j);
    cleanup();
}

Test(eval_cli, slm_and_llm_accuracy_equal_generate_item_by_item, .timeout = 300) {
    setup_items();
    int ref_s[MAX_ITEMS], ref_l[MAX_ITEMS], got_s[MAX_ITEMS], got_l[MAX_ITEMS];
    const int n_s = brute_force(SLM, ref_s), n_l = brute_force(LLM, ref_l);
    cJSON *js = eval("--strategy slm", got_s), *jl = eval("--strategy llm", got_l);
    cr_assert_float_eq(num(js, "accuracy"), (double)n_s / N_ITEMS, 1e-12, "slm: %g vs %d/%d", num(js, "accuracy"), n_s, N_ITEMS);
    cr_assert_float_eq(num(jl, "accuracy"), (double)n_l / N_ITEMS, 1e-12, "llm: %g vs %d/%d", num(jl, "accuracy"), n_l, N_ITEMS);
    assert_same(got_s, ref_s, "slm");
    assert_same(got_l, ref_l, "llm");
    cr_assert_eq(num(js, "llm_share"), 0);
    cr_assert_eq(num(jl, "llm_share"), 1);
    cr_assert_eq(num(jl, "llm_token_share"), 1);
    /* the items tell the models apart, so the extremes below are not vacuous */
    int differ = 0;
    for (int i = 0; i < N_ITEMS; i++) differ += ref_s[i] != ref_l[i];
    cr_assert(differ >= 2, "the models agree on %d of %d items", N_ITEMS - differ, N_ITEMS);
    cJSON_Delete(js), cJSON_Delete(jl);
    cleanup();
}

static void check_extreme(const char *strategy, const int want[MAX_ITEMS], double share) {
    int got[MAX_ITEMS];
    cJSON *j = eval(strategy, got);
    assert_same(got, want, strategy);
    int n = 0;
    for (int i = 0; i < N_ITEMS; i++) n += want[i];
    cr_assert_float_eq(num(j, "accuracy"), (double)n / N_ITEMS, 1e-12, "%s", strategy);
    cr_assert_eq(num(j, "llm_share"), share, "%s: llm_share %g", strategy, num(j, "llm_share"));
    /* a cascade that escalates threw the SLM's answer away: those tokens count in the total */
    if (!strstr(strategy, "cascade") || share == 0)
        cr_assert_eq(num(j, "llm_token_share"), share, "%s: llm_token_share %g", strategy, num(j, "llm_token_share"));
    else
        cr_assert(num(j, "llm_token_share") > 0 && num(j, "llm_token_share") < 1, "%s", strategy);
    cJSON_Delete(j);
}

Test(eval_cli, route_cascade_defer_at_their_extremes_are_one_model, .timeout = 300) {
    setup_items();
    int s[MAX_ITEMS], l[MAX_ITEMS];
    cJSON_Delete(eval("--strategy slm", s));
    cJSON_Delete(eval("--strategy llm", l));
    check_extreme("--strategy route --threshold -inf", l, 1);
    check_extreme("--strategy route --threshold inf", s, 0);
    check_extreme("--strategy route --signal random --llm-share 1", l, 1);
    check_extreme("--strategy defer --eta 2", l, 1);
    check_extreme("--strategy defer --eta 0", s, 0);
    check_extreme("--strategy cascade --threshold inf", l, 1);
    check_extreme("--strategy cascade --threshold -inf", s, 0);
    /* three tiers, one threshold each: the middle tier (the slm again) answers everything */
    check_extreme("--strategy cascade --mid " SLM " --threshold inf --threshold -inf", s, 0);
    cleanup();
}

Test(eval_cli, route_fit_labels_fits_and_eval_reads_the_router, .timeout = 300) {
    setup_items();
    int s[MAX_ITEMS], l[MAX_ITEMS];
    cJSON_Delete(eval("--strategy slm", s));
    cJSON_Delete(eval("--strategy llm", l));
    int pos = 0;
    for (int i = 0; i < N_ITEMS; i++) pos += !s[i] && l[i];
    char args[2048], router[320], labelled[320];
    snprintf(router, sizeof router, "%s/router.txt", dir);
    snprintf(labelled, sizeof labelled, "%s/labelled.jsonl", dir);
    /* labels from both models: SLM wrong and LLM right */
    snprintf(args, sizeof args, "route-fit --slm %s -m %s -f %s -o %s --kind threshold --signal prompt_nll "
                                "--llm-share 0.5 -t 2 --json --dump %s", SLM, LLM, items_path, router, labelled);
    cJSON *j = run_json(args);
    cr_assert_eq((int)num(j, "positives"), pos, "positives %g, the dumps say %d", num(j, "positives"), pos);
    cr_assert_float_eq(num(j, "llm_share"), 0.5, 1e-12);
    cJSON_Delete(j);
    /* the router sends half of these items to the LLM in eval too */
    snprintf(args, sizeof args, "--strategy route --router %s", router);
    int r[MAX_ITEMS];
    j = eval(args, r);
    cr_assert_float_eq(num(j, "llm_share"), 0.5, 1e-12, "share %g", num(j, "llm_share"));
    cJSON_Delete(j);
    /* the labelled dump carries labels and signals: fitting from it runs no model */
    snprintf(args, sizeof args, "route-fit -f %s -o %s --kind logistic --llm-share 0.25 --json", labelled, router);
    j = run_json(args);
    cr_assert_eq((int)num(j, "positives"), pos);
    cr_assert_float_eq(num(j, "llm_share"), 0.25, 1e-12);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "kind")->valuestring, "logistic");
    cJSON_Delete(j);
    snprintf(args, sizeof args, "--strategy route --router %s", router);
    j = eval(args, r);
    cr_assert_float_eq(num(j, "llm_share"), 0.25, 1e-12, "share %g", num(j, "llm_share"));
    cJSON_Delete(j);
    /* with the pooled hidden state, read from the dump: the route strategy's
     * own pass over each prompt gives the same scores, so the same share */
    snprintf(args, sizeof args, "route-fit -f %s -o %s --kind logistic --hidden --llm-share 0.25 --json", labelled,
             router);
    j = run_json(args);
    cr_assert_gt(num(j, "hidden"), 0, "the router reads no hidden state");
    cr_assert_float_eq(num(j, "llm_share"), 0.25, 1e-12);
    cJSON_Delete(j);
    snprintf(args, sizeof args, "--strategy route --router %s", router);
    j = eval(args, r);
    cr_assert_float_eq(num(j, "llm_share"), 0.25, 1e-12, "share %g", num(j, "llm_share"));
    cJSON_Delete(j);
    cleanup();
}
