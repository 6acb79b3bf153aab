/* `duet info` on broken GGUF files: truncated fixtures, random byte flips and
 * hand-made absurd headers must all end in exit status 1 with one line on
 * stderr naming the problem -- never a crash, a hang or a sanitizer report. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "duet/gguf.h"
#include "duet/quant.h"
#include "gguf_craft.h"
#include "testutil.h"

extern char **environ;

static char tmpdir[64];
static char errpath[128];

static void setup(void) {
    strcpy(tmpdir, "/tmp/duet-badfiles-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", tmpdir);
    /* A sanitizer report must not pass for the expected exit status 1. */
    setenv("ASAN_OPTIONS", "exitcode=99", 1);
    setenv("UBSAN_OPTIONS", "exitcode=98:print_stacktrace=1", 1);
}

static void teardown(void) {
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(badfiles, .init = setup, .fini = teardown, .timeout = 120);

/* Runs `duet info -m path` (stdout discarded, stderr to errpath); returns the
 * exit status, or 128 + signal number if it was killed. */
static int run_info(const char *path) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char *argv[] = {(char *)DUET_BIN, "info", "-m", (char *)path, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, DUET_BIN, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "cannot run %s", DUET_BIN);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* stderr of the last run, NUL-terminated (static buffer). */
static const char *last_stderr(void) {
    static char buf[8192];
    FILE *f = fopen(errpath, "rb");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = 0;
    return buf;
}

/* Exit 1, exactly one line on stderr starting "duet info:" (and containing
 * `want` if given). */
static void expect_one_line_error(const char *path, const char *want, const char *what) {
    int st = run_info(path);
    const char *err = last_stderr();
    cr_assert_eq(st, 1, "%s: exit status %d, stderr: %s", what, st, err);
    cr_assert(!strncmp(err, "duet info:", 10), "%s: stderr: %s", what, err);
    const char *nl = strchr(err, '\n');
    cr_assert(nl && nl[1] == 0, "%s: expected one line, got: %s", what, err);
    if (want) cr_assert(strstr(err, want), "%s: message should mention '%s': %s", what, want, err);
}

static void save(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(p, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

static const char *FIXTURES[] = {
    "ref-models/llama-a-F32.gguf",  "ref-models/llama-a-Q4_K_M.gguf", "ref-models/llama-a-Q8_0.gguf",
    "ref-models/qwen2-b-F32.gguf",  "ref-models/qwen2-b-Q4_K_M.gguf", "ref-models/qwen2-b-Q8_0.gguf",
    "vocab/ggml-vocab-llama-spm.gguf",
};
#define N_FIXTURES (sizeof FIXTURES / sizeof FIXTURES[0])

Test(badfiles, truncated_fixtures) {
    char src[1024], path[256], what[512];
    snprintf(path, sizeof path, "%s/trunc.gguf", tmpdir);
    for (size_t f = 0; f < N_FIXTURES; f++) {
        size_t n;
        uint8_t *data = tu_slurp(tu_data(FIXTURES[f], src, sizeof src), &n);
        cr_assert_not_null(data, "%s", FIXTURES[f]);
        cr_assert_eq(run_info(src), 0, "%s: the intact file must pass: %s", FIXTURES[f], last_stderr());
        /* Write the file once and shrink it step by step (k = 63 .. 0). */
        save(path, data, n);
        for (int k = 63; k >= 0; k--) {
            size_t cut = n * (size_t)k / 64;
            cr_assert_eq(truncate(path, (off_t)cut), 0);
            /* LeakSanitizer's exit scan doubles a sanitized run's cost: keep
             * it for every 8th cut only (the error paths are the same). */
            setenv("ASAN_OPTIONS", k % 8 ? "exitcode=99:detect_leaks=0" : "exitcode=99", 1);
            snprintf(what, sizeof what, "%s cut at %zu of %zu", FIXTURES[f], cut, n);
            expect_one_line_error(path, NULL, what);
        }
        setenv("ASAN_OPTIONS", "exitcode=99", 1);
        free(data);
    }
}

/* xorshift64*: a fixed, seeded stream so failures reproduce. */
static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* Flips 1..8 random bytes, mostly inside the metadata (the data section
 * cannot make a file invalid). Records the positions in at[] (returns how
 * many) and the bytes they held in old[] so the caller can undo them
 * (in reverse order: a position may be hit twice). */
static int mutate(uint8_t *p, size_t n, size_t meta_end, uint64_t *s, size_t at[8], uint8_t old[8]) {
    int flips = 1 + (int)(rng_next(s) % 8);
    for (int i = 0; i < flips; i++) {
        uint64_t r = rng_next(s);
        at[i] = (r & 7) ? (size_t)((r >> 8) % meta_end) : (size_t)((r >> 8) % n);
        old[i] = p[at[i]];
        uint8_t v = (uint8_t)(r >> 56);
        p[at[i]] = (r & 0x30) == 0x30 ? v : (uint8_t)(p[at[i]] ^ (1u << ((r >> 4) & 7)));
    }
    return flips;
}

Test(badfiles, random_byte_flips_cli) {
    char src[1024], path[N_FIXTURES][256], what[512];
    uint8_t *orig[N_FIXTURES];
    size_t size[N_FIXTURES], meta_end[N_FIXTURES];
    /* Each fixture is written once; a try patches a few bytes in place with
     * pwrite and puts them back afterwards. */
    for (size_t f = 0; f < N_FIXTURES; f++) {
        orig[f] = tu_slurp(tu_data(FIXTURES[f], src, sizeof src), &size[f]);
        cr_assert_not_null(orig[f]);
        duet_gguf *g;
        cr_assert_eq(duet_gguf_open_memory(&g, orig[f], size[f], NULL), 0);
        meta_end[f] = (size_t)duet_gguf_data_offset(g);
        duet_gguf_close(g);
        snprintf(path[f], sizeof path[f], "%s/flip%zu.gguf", tmpdir, f);
        save(path[f], orig[f], size[f]);
    }
    uint64_t seed = 0x5eed1234abcdull;
    int n_ok = 0, n_err = 0;
    for (int i = 0; i < 200; i++) {
        size_t f = (size_t)i % N_FIXTURES, at[8];
        uint8_t old[8];
        int k = mutate(orig[f], size[f], meta_end[f], &seed, at, old);
        uint8_t flipped[8];
        for (int j = 0; j < k; j++) flipped[j] = orig[f][at[j]];
        int fd = open(path[f], O_WRONLY);
        cr_assert_geq(fd, 0);
        for (int j = 0; j < k; j++) cr_assert_eq(pwrite(fd, &flipped[j], 1, (off_t)at[j]), 1);
        setenv("ASAN_OPTIONS", i % 8 ? "exitcode=99:detect_leaks=0" : "exitcode=99", 1); /* as above */
        int st = run_info(path[f]);
        snprintf(what, sizeof what, "flip file %d (%s)", i, FIXTURES[f]);
        cr_assert(st == 0 || st == 1, "%s: exit status %d, stderr: %s", what, st, last_stderr());
        if (st == 1) {
            const char *err = last_stderr();
            const char *nl = strchr(err, '\n');
            cr_assert(!strncmp(err, "duet info:", 10) && nl && nl[1] == 0, "%s: stderr: %s", what, err);
            n_err++;
        } else {
            n_ok++;
        }
        /* undo, in reverse so a position flipped twice gets its first value */
        for (int j = k - 1; j >= 0; j--) orig[f][at[j]] = old[j];
        for (int j = 0; j < k; j++) cr_assert_eq(pwrite(fd, &orig[f][at[j]], 1, (off_t)at[j]), 1);
        close(fd);
    }
    setenv("ASAN_OPTIONS", "exitcode=99", 1);
    for (size_t f = 0; f < N_FIXTURES; f++) free(orig[f]);
    /* Most flips land in metadata and must be caught; some are harmless. */
    cr_assert_gt(n_err, 50, "only %d of 200 mutated files were rejected", n_err);
    cr_assert_gt(n_ok, 0);
}

/* Touches every byte the reader hands out, so ASan sees any out-of-range view. */
static uint64_t walk(const duet_gguf *g) {
    uint64_t acc = 0;
    for (int64_t i = 0; i < duet_gguf_n_kv(g); i++) {
        const char *key = duet_gguf_key(g, i);
        acc += strlen(key);
        duet_gguf_vtype t = duet_gguf_kv_type(g, i);
        int64_t iv;
        double fv;
        const char *s;
        size_t len;
        if (!duet_gguf_get_int(g, key, &iv, NULL)) acc += (uint64_t)iv;
        if (!duet_gguf_get_float(g, key, &fv, NULL)) acc += fv == fv;
        if (!duet_gguf_get_str(g, key, &s, &len, NULL))
            for (size_t k = 0; k < len; k++) acc += (uint8_t)s[k];
        duet_gguf_vtype et;
        uint64_t n;
        const void *data;
        if (t == DUET_GGUF_ARRAY && !duet_gguf_get_arr(g, key, &et, &n, &data, NULL)) {
            if (et == DUET_GGUF_STRING) {
                for (uint64_t k = 0; k < n; k++) {
                    cr_assert_eq(duet_gguf_arr_str(g, key, k, &s, &len, NULL), 0);
                    if (len) acc += (uint8_t)s[0] + (uint8_t)s[len - 1];
                }
            } else if (n) {
                const uint8_t *b = data;
                acc += b[0];
            }
        }
    }
    for (int64_t i = 0; i < duet_gguf_n_tensors(g); i++) {
        const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i);
        const uint8_t *d = t->data;
        acc += d[0] + d[t->nbytes - 1] + strlen(t->name);
    }
    return acc;
}

/* Many more mutations in-process (cheap): open_memory must reject or return
 * a handle whose every view lies inside the buffer. */
Test(badfiles, random_byte_flips_in_process) {
    char src[1024];
    uint64_t seed = 0xfeedfacecafeull, acc = 0;
    for (size_t f = 0; f < N_FIXTURES; f++) {
        size_t n;
        uint8_t *orig = tu_slurp(tu_data(FIXTURES[f], src, sizeof src), &n);
        cr_assert_not_null(orig);
        duet_gguf *g;
        cr_assert_eq(duet_gguf_open_memory(&g, orig, n, NULL), 0);
        size_t meta_end = (size_t)duet_gguf_data_offset(g);
        duet_gguf_close(g);
        /* One exactly-sized heap block (ASan flags any read past its end),
         * mutated and restored in place: no copy of the whole file per try. */
        uint8_t *p = malloc(n);
        memcpy(p, orig, n);
        for (int i = 0; i < 300; i++) {
            size_t at[8];
            uint8_t old[8];
            int k = mutate(p, n, meta_end, &seed, at, old);
            duet_err e = {0};
            if (duet_gguf_open_memory(&g, p, n, &e) == 0) {
                acc += walk(g);
                duet_gguf_close(g);
            } else {
                cr_assert(e.msg[0], "an error must come with a message");
            }
            while (k--) p[at[k]] = old[k];
        }
        cr_assert_eq(memcmp(p, orig, n), 0, "mutations must be undone exactly");
        free(p);
        free(orig);
    }
    cr_assert_neq(acc, 0);
}

/* ---- hand-made files ------------------------------------------------------ */

typedef struct {
    uint32_t version;
    uint64_t n_tensors, n_kv;   /* as written in the header */
    int alignment_kv;           /* write general.alignment */
    uint32_t alignment;
    uint64_t name_len_override; /* 0: real length */
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
    uint64_t offset;
    int second_tensor;          /* add "b" (F32 [8]) at offset2 */
    uint64_t offset2;
    const char *name2;
} spec;

static spec valid_spec(void) {
    spec s = {3, 1, 1, 1, 32, 0, 2, {8, 2, 1, 1}, DUET_TYPE_F32, 0, 0, 0, "b"};
    return s;
}

/* A small file: one kv (general.alignment) and tensors "a" (and "b"), data
 * section of 256 bytes. */
static void build(craft *b, const spec *s) {
    uint64_t n_t = s->second_tensor ? 2 : 1;
    craft_header(b, s->version, s->n_tensors == 1 && s->second_tensor ? n_t : s->n_tensors, s->n_kv);
    if (s->alignment_kv) {
        craft_key(b, "general.alignment", DUET_GGUF_UINT32);
        craft_u32(b, s->alignment);
    }
    if (s->name_len_override) {
        craft_u64(b, s->name_len_override);
        craft_bytes(b, "a", 1);
        craft_u32(b, s->n_dims);
    } else {
        craft_str(b, "a");
        craft_u32(b, s->n_dims);
    }
    for (uint32_t d = 0; d < s->n_dims && d < 16; d++) craft_u64(b, s->ne[d < 4 ? d : 3]);
    craft_u32(b, s->type);
    craft_u64(b, s->offset);
    if (s->second_tensor) {
        uint64_t ne = 8;
        craft_tensor_info(b, s->name2, 1, &ne, DUET_TYPE_F32, s->offset2);
    }
    craft_pad(b, 32);
    for (int i = 0; i < 256; i++) craft_u8(b, (uint8_t)i);
}

static void expect_spec(const spec *s, const char *want, const char *what) {
    craft b = {0};
    build(&b, s);
    char path[256];
    snprintf(path, sizeof path, "%s/hand.gguf", tmpdir);
    cr_assert_eq(craft_save(&b, path), 0);
    if (want) expect_one_line_error(path, want, what);
    else cr_assert_eq(run_info(path), 0, "%s must be accepted: %s", what, last_stderr());
    craft_free(&b);
}

static void expect_bytes(const craft *b, const char *want, const char *what) {
    char path[256];
    snprintf(path, sizeof path, "%s/hand.gguf", tmpdir);
    cr_assert_eq(craft_save(b, path), 0);
    expect_one_line_error(path, want, what);
}

Test(badfiles, handmade_headers) {
    spec s = valid_spec();
    expect_spec(&s, NULL, "the valid base file");
    s.second_tensor = 1, s.offset2 = 64;
    expect_spec(&s, NULL, "the valid two-tensor file");

    s = valid_spec(), s.n_tensors = 1ull << 63;
    expect_spec(&s, "tensors cannot fit", "n_tensors = 2^63");
    s = valid_spec(), s.n_kv = 1ull << 60;
    expect_spec(&s, "metadata entries cannot fit", "n_kv = 2^60");
    s = valid_spec(), s.n_kv = 3;
    expect_spec(&s, "kv 2: key length", "n_kv larger than the entries present");
    s = valid_spec(), s.name_len_override = 1ull << 62;
    expect_spec(&s, "name length", "tensor name length 2^62");
    s = valid_spec(), s.n_dims = 9;
    expect_spec(&s, "n_dims 9", "n_dims = 9");
    s = valid_spec(), s.n_dims = 0;
    expect_spec(&s, "n_dims 0", "n_dims = 0");
    s = valid_spec(), s.ne[1] = 0;
    expect_spec(&s, "dimension 1 is 0", "dim = 0");
    s = valid_spec(), s.ne[0] = 1ull << 62;
    expect_spec(&s, "overflow", "dim 2^62 (F32 bytes overflow)");
    s = valid_spec(), s.ne[1] = 1ull << 62;
    expect_spec(&s, "overflow", "dims 8 x 2^62 (element count overflows)");
    s = valid_spec(), s.ne[0] = 1ull << 63;
    expect_spec(&s, "dimension 0", "dim 2^63 (not an int64)");
    s = valid_spec(), s.ne[0] = 1ull << 30;
    expect_spec(&s, "runs past end of file", "dim 2^30 (data past EOF)");
    s = valid_spec(), s.offset = 1ull << 40;
    expect_spec(&s, "runs past end of file", "offset past EOF");
    s = valid_spec(), s.offset = UINT64_MAX - 31;
    expect_spec(&s, "runs past end of file", "offset near 2^64");
    s = valid_spec(), s.type = 99;
    expect_spec(&s, "unknown tensor type 99", "tensor type 99");
    s = valid_spec(), s.offset = 4;
    expect_spec(&s, "not a multiple of the alignment", "misaligned offset");
    s = valid_spec(), s.alignment = 0;
    expect_spec(&s, "general.alignment = 0", "alignment 0");
    s = valid_spec(), s.alignment = 3;
    expect_spec(&s, "general.alignment = 3", "alignment 3");
    s = valid_spec(), s.type = DUET_TYPE_Q8_0, s.ne[0] = 33, s.ne[1] = 1;
    expect_spec(&s, "block size", "Q8_0 row of 33 elements");
    s = valid_spec(), s.version = 1;
    expect_spec(&s, "version 1", "GGUF v1");
    s = valid_spec(), s.version = 0x03000000;
    expect_spec(&s, "big-endian", "big-endian version");
    s = valid_spec(), s.second_tensor = 1, s.offset2 = 32;
    expect_spec(&s, "overlap", "overlapping tensors");
    s = valid_spec(), s.second_tensor = 1, s.offset2 = 64, s.name2 = "a";
    expect_spec(&s, "duplicate tensor name 'a'", "duplicate tensor names");

    craft b = {0};
    craft_bytes(&b, "GGML", 4);
    craft_u32(&b, 3);
    expect_bytes(&b, "bad magic", "bad magic");
    craft_free(&b);

    /* metadata values */
    craft_header(&b, 3, 0, 1);
    craft_key(&b, "general.name", DUET_GGUF_STRING);
    craft_u64(&b, 1ull << 62);
    craft_bytes(&b, "x", 1);
    expect_bytes(&b, "string length", "string value length 2^62");
    craft_free(&b);

    craft_header(&b, 3, 0, 1);
    craft_u64(&b, 1ull << 62);
    craft_bytes(&b, "general.name", 12);
    expect_bytes(&b, "key length", "key length 2^62");
    craft_free(&b);

    craft_header(&b, 3, 0, 1);
    craft_key(&b, "x", 13);
    craft_u32(&b, 0);
    expect_bytes(&b, "unknown value type 13", "value type 13");
    craft_free(&b);

    craft_header(&b, 3, 0, 1);
    craft_key(&b, "tokenizer.ggml.scores", DUET_GGUF_ARRAY);
    craft_u32(&b, DUET_GGUF_FLOAT32);
    craft_u64(&b, 1ull << 62);
    craft_zeros(&b, 64);
    expect_bytes(&b, "array of 4611686018427387904 float32", "float array count 2^62 (count*4 overflows)");
    craft_free(&b);

    craft_header(&b, 3, 0, 1);
    craft_key(&b, "tokenizer.ggml.tokens", DUET_GGUF_ARRAY);
    craft_u32(&b, DUET_GGUF_STRING);
    craft_u64(&b, 3);
    craft_str(&b, "a");
    craft_u64(&b, 1000);
    craft_bytes(&b, "b", 1);
    craft_zeros(&b, 40);
    expect_bytes(&b, "string length 1000", "string inside an array past EOF");
    craft_free(&b);

    craft_header(&b, 3, 0, 1);
    craft_key(&b, "x", DUET_GGUF_ARRAY);
    craft_u32(&b, 77);
    craft_u64(&b, 1);
    expect_bytes(&b, "unknown array element type 77", "array element type 77");
    craft_free(&b);

    craft_header(&b, 3, 0, 1); /* arrays nested 100 deep */
    craft_key(&b, "deep", DUET_GGUF_ARRAY);
    for (int i = 0; i < 100; i++) {
        craft_u32(&b, DUET_GGUF_ARRAY);
        craft_u64(&b, 1);
    }
    craft_zeros(&b, 64);
    expect_bytes(&b, "nested deeper", "arrays nested 100 deep");
    craft_free(&b);

    craft_header(&b, 3, 0, 2);
    craft_key(&b, "general.name", DUET_GGUF_STRING);
    craft_str(&b, "a");
    craft_key(&b, "general.name", DUET_GGUF_STRING);
    craft_str(&b, "b");
    expect_bytes(&b, "duplicate key 'general.name'", "duplicate key");
    craft_free(&b);

    craft_header(&b, 3, 0, 1);
    craft_u64(&b, 3);
    craft_bytes(&b, "a\0b", 3);
    craft_u32(&b, DUET_GGUF_UINT8);
    craft_u8(&b, 1);
    expect_bytes(&b, "NUL", "key with a NUL byte");
    craft_free(&b);

    craft_header(&b, 3, 0, 1);
    craft_key(&b, "general.alignment", DUET_GGUF_STRING);
    craft_str(&b, "32");
    expect_bytes(&b, "general.alignment has type string", "alignment of type string");
    craft_free(&b);

    char path[256];
    snprintf(path, sizeof path, "%s/does-not-exist.gguf", tmpdir);
    expect_one_line_error(path, "No such file", "missing file");
    expect_one_line_error(tmpdir, "not a regular file", "a directory");
}
