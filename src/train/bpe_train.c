/* Byte-level BPE training: GPT-2 pre-tokenization, weighted pair counts,
 * greedy merges, and a llama.cpp-loadable "gpt2" vocabulary as output. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "duet/bpe_train.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/gguf.h"

/* GPT-2's pre-tokenizer ("gpt-2" pre in llama.cpp). */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct {
    char *bytes;      /* the piece's text */
    uint32_t len;
    int64_t count;    /* occurrences in the corpus */
    int32_t *sym;     /* (n_sym) current token ids, while learning */
    uint32_t n_sym;
} piece;

typedef struct {
    uint64_t key;     /* left << 32 | right, UINT64_MAX = empty slot */
    int64_t count;
} pair_slot;

struct duet_bpe {
    piece *pieces;
    int64_t n_pieces, cap_pieces;
    int64_t *index;   /* open-addressing table of piece ids, -1 = empty */
    int64_t index_cap;
    pcre2_code *re;
    pcre2_match_data *md;
    int32_t (*merges)[2];
    int n_merges;
    int learned;
    char **tok_bytes; /* (256 + n_merges) token byte strings */
    uint32_t *tok_len;
};

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
    return h;
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
    return x;
}

duet_bpe *duet_bpe_new(void) {
    duet_bpe *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->index_cap = 1 << 12;
    b->index = malloc(sizeof(int64_t) * b->index_cap);
    if (!b->index) { free(b); return NULL; }
    memset(b->index, 0xff, sizeof(int64_t) * b->index_cap);
    return b;
}

void duet_bpe_free(duet_bpe *b) {
    if (!b) return;
    for (int64_t i = 0; i < b->n_pieces; i++) { free(b->pieces[i].bytes); free(b->pieces[i].sym); }
    free(b->pieces);
    free(b->index);
    if (b->md) pcre2_match_data_free(b->md);
    if (b->re) pcre2_code_free(b->re);
    free(b->merges);
    if (b->tok_bytes)
        for (int i = 0; i < 256 + b->n_merges; i++) free(b->tok_bytes[i]);
    free(b->tok_bytes);
    free(b->tok_len);
    free(b);
}

static int grow_index(duet_bpe *b) {
    int64_t cap = b->index_cap * 2;
    int64_t *idx = malloc(sizeof(int64_t) * cap);
    if (!idx) return DUET_ENOMEM;
    memset(idx, 0xff, sizeof(int64_t) * cap);
    for (int64_t i = 0; i < b->n_pieces; i++) {
        uint64_t h = hash_bytes(b->pieces[i].bytes, b->pieces[i].len) & (uint64_t)(cap - 1);
        while (idx[h] >= 0) h = (h + 1) & (uint64_t)(cap - 1);
        idx[h] = i;
    }
    free(b->index);
    b->index = idx;
    b->index_cap = cap;
    return 0;
}

int duet_bpe_add_piece(duet_bpe *b, const char *s, size_t len, int64_t count, duet_err *err) {
    if (!b || (!s && len) || count <= 0 || len > UINT32_MAX)
        return duet_err_set(err, DUET_EINVAL, "bpe: bad piece");
    if (b->learned) return duet_err_set(err, DUET_EINVAL, "bpe: pieces added after learning");
    if (len == 0) return 0;
    if ((b->n_pieces + 1) * 2 > b->index_cap && grow_index(b))
        return duet_err_set(err, DUET_ENOMEM, "bpe: out of memory (piece index)");
    uint64_t mask = (uint64_t)(b->index_cap - 1);
    uint64_t h = hash_bytes(s, len) & mask;
    for (; b->index[h] >= 0; h = (h + 1) & mask) {
        piece *p = &b->pieces[b->index[h]];
        if (p->len == len && !memcmp(p->bytes, s, len)) { p->count += count; return 0; }
    }
    if (b->n_pieces == b->cap_pieces) {
        int64_t cap = b->cap_pieces ? b->cap_pieces * 2 : 1024;
        piece *np = realloc(b->pieces, sizeof *np * cap);
        if (!np) return duet_err_set(err, DUET_ENOMEM, "bpe: out of memory (pieces)");
        b->pieces = np;
        b->cap_pieces = cap;
    }
    piece *p = &b->pieces[b->n_pieces];
    memset(p, 0, sizeof *p);
    p->bytes = malloc(len);
    if (!p->bytes) return duet_err_set(err, DUET_ENOMEM, "bpe: out of memory (piece)");
    memcpy(p->bytes, s, len);
    p->len = (uint32_t)len;
    p->count = count;
    b->index[h] = b->n_pieces++;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if s starts an invalid one. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) { len = 2; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { len = 3; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; min = 0x10000; }
    else return 0;
    if (n < len) return 0;
    unsigned cp = c & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

/* Splits one valid UTF-8 run with the regex (checked once, so no per-call check). */
static int split_valid(duet_bpe *b, const char *text, size_t len, duet_err *err) {
    size_t pos = 0;
    while (pos < len) {
        int rc = pcre2_match(b->re, (PCRE2_SPTR)text, len, pos, PCRE2_NO_UTF_CHECK, b->md, NULL);
        if (rc < 0) return duet_bpe_add_piece(b, text + pos, len - pos, 1, err);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(b->md);
        if (ov[0] > pos) {
            int r = duet_bpe_add_piece(b, text + pos, ov[0] - pos, 1, err);
            if (r) return r;
        }
        if (ov[1] == ov[0]) { /* empty match: step over one character */
            size_t l = utf8_len((const unsigned char *)text + ov[0], len - ov[0]);
            int r = duet_bpe_add_piece(b, text + ov[0], l ? l : 1, 1, err);
            if (r) return r;
            pos = ov[0] + (l ? l : 1);
            continue;
        }
        int r = duet_bpe_add_piece(b, text + ov[0], ov[1] - ov[0], 1, err);
        if (r) return r;
        pos = ov[1];
    }
    return 0;
}

int duet_bpe_add_text(duet_bpe *b, const char *text, size_t len, duet_err *err) {
    if (!b || (!text && len)) return duet_err_set(err, DUET_EINVAL, "bpe: bad text");
    if (!b->re) {
        int ec;
        PCRE2_SIZE eo;
        b->re = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                              &ec, &eo, NULL);
        if (!b->re) return duet_err_set(err, DUET_EUNSUPPORTED, "bpe: cannot compile the GPT-2 regex");
        b->md = pcre2_match_data_create_from_pattern(b->re, NULL);
        if (!b->md) return duet_err_set(err, DUET_ENOMEM, "bpe: out of memory (regex)");
    }
    /* Valid UTF-8 runs go through the regex; each invalid byte is a piece of its own. */
    const unsigned char *u = (const unsigned char *)text;
    size_t run = 0, i = 0;
    while (i < len) {
        size_t l = utf8_len(u + i, len - i);
        if (l) { i += l; continue; }
        int r = split_valid(b, text + run, i - run, err);
        if (!r) r = duet_bpe_add_piece(b, text + i, 1, 1, err);
        if (r) return r;
        run = ++i;
    }
    return split_valid(b, text + run, len - run, err);
}

/* ---- pair counts: open addressing, entries are never removed ---------------- */
typedef struct {
    pair_slot *slot;
    int64_t cap, used;
} pair_table;

static int pairs_init(pair_table *t, int64_t cap) {
    t->slot = malloc(sizeof(pair_slot) * cap);
    if (!t->slot) return DUET_ENOMEM;
    for (int64_t i = 0; i < cap; i++) { t->slot[i].key = UINT64_MAX; t->slot[i].count = 0; }
    t->cap = cap;
    t->used = 0;
    return 0;
}

static int pairs_add(pair_table *t, int32_t a, int32_t c, int64_t delta) {
    if ((t->used + 1) * 2 > t->cap) {
        pair_table nt;
        if (pairs_init(&nt, t->cap * 2)) return DUET_ENOMEM;
        for (int64_t i = 0; i < t->cap; i++) {
            if (t->slot[i].key == UINT64_MAX) continue;
            uint64_t h = hash_u64(t->slot[i].key) & (uint64_t)(nt.cap - 1);
            while (nt.slot[h].key != UINT64_MAX) h = (h + 1) & (uint64_t)(nt.cap - 1);
            nt.slot[h] = t->slot[i];
            nt.used++;
        }
        free(t->slot);
        *t = nt;
    }
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)c;
    uint64_t mask = (uint64_t)(t->cap - 1);
    uint64_t h = hash_u64(key) & mask;
    while (t->slot[h].key != UINT64_MAX && t->slot[h].key != key) h = (h + 1) & mask;
    if (t->slot[h].key == UINT64_MAX) { t->slot[h].key = key; t->used++; }
    t->slot[h].count += delta;
    return 0;
}

static int piece_pairs(pair_table *t, const piece *p, int64_t sign) {
    for (uint32_t i = 0; i + 1 < p->n_sym; i++)
        if (pairs_add(t, p->sym[i], p->sym[i + 1], sign * p->count)) return DUET_ENOMEM;
    return 0;
}

static int piece_has(const piece *p, int32_t a, int32_t c) {
    for (uint32_t i = 0; i + 1 < p->n_sym; i++)
        if (p->sym[i] == a && p->sym[i + 1] == c) return 1;
    return 0;
}

int duet_bpe_learn(duet_bpe *b, int n_merges, duet_err *err) {
    if (!b || n_merges < 0 || n_merges > (1 << 20))
        return duet_err_set(err, DUET_EINVAL, "bpe: bad merge count %d", n_merges);
    if (b->learned) return duet_err_set(err, DUET_EINVAL, "bpe: already learned");
    b->learned = 1;
    b->merges = malloc(sizeof *b->merges * (n_merges ? n_merges : 1));
    b->tok_bytes = calloc(256 + (size_t)n_merges, sizeof(char *));
    b->tok_len = calloc(256 + (size_t)n_merges, sizeof(uint32_t));
    if (!b->merges || !b->tok_bytes || !b->tok_len) return duet_err_set(err, DUET_ENOMEM, "bpe: out of memory");
    for (int i = 0; i < 256; i++) {
        b->tok_bytes[i] = malloc(1);
        if (!b->tok_bytes[i]) return duet_err_set(err, DUET_ENOMEM, "bpe: out of memory");
        b->tok_bytes[i][0] = (char)i;
        b->tok_len[i] = 1;
    }
    pair_table t;
    if (pairs_init(&t, 1 << 14)) return duet_err_set(err, DUET_ENOMEM, "bpe: out of memory (pairs)");
    int rc = 0;
    for (int64_t i = 0; i < b->n_pieces && !rc; i++) {
        piece *p = &b->pieces[i];
        p->sym = malloc(sizeof(int32_t) * p->len);
        if (!p->sym) { rc = DUET_ENOMEM; break; }
        for (uint32_t k = 0; k < p->len; k++) p->sym[k] = (unsigned char)p->bytes[k];
        p->n_sym = p->len;
        rc = piece_pairs(&t, p, +1);
    }
    while (!rc && b->n_merges < n_merges) {
        /* The most frequent pair; ties to the smallest (left, right). */
        int64_t best = 0;
        uint64_t best_key = UINT64_MAX;
        for (int64_t i = 0; i < t.cap; i++) {
            const pair_slot *s = &t.slot[i];
            if (s->key == UINT64_MAX || s->count <= 0) continue;
            if (s->count > best || (s->count == best && s->key < best_key)) { best = s->count; best_key = s->key; }
        }
        if (best <= 0) break;
        int32_t a = (int32_t)(best_key >> 32), c = (int32_t)(best_key & 0xffffffffu);
        int32_t id = 256 + b->n_merges;
        for (int64_t i = 0; i < b->n_pieces && !rc; i++) {
            piece *p = &b->pieces[i];
            if (!piece_has(p, a, c)) continue;
            rc = piece_pairs(&t, p, -1);
            uint32_t w = 0;
            for (uint32_t k = 0; k < p->n_sym; k++) {
                if (k + 1 < p->n_sym && p->sym[k] == a && p->sym[k + 1] == c) { p->sym[w++] = id; k++; }
                else p->sym[w++] = p->sym[k];
            }
            p->n_sym = w;
            if (!rc) rc = piece_pairs(&t, p, +1);
        }
        if (rc) break;
        b->merges[b->n_merges][0] = a;
        b->merges[b->n_merges][1] = c;
        uint32_t la = b->tok_len[a], lc = b->tok_len[c];
        b->tok_bytes[id] = malloc(la + lc);
        if (!b->tok_bytes[id]) { rc = DUET_ENOMEM; break; }
        memcpy(b->tok_bytes[id], b->tok_bytes[a], la);
        memcpy(b->tok_bytes[id] + la, b->tok_bytes[c], lc);
        b->tok_len[id] = la + lc;
        b->n_merges++;
    }
    free(t.slot);
    if (rc) return duet_err_set(err, DUET_ENOMEM, "bpe: out of memory while merging");
    return 0;
}

int duet_bpe_n_merges(const duet_bpe *b) { return b ? b->n_merges : 0; }
int64_t duet_bpe_n_pieces(const duet_bpe *b) { return b ? b->n_pieces : 0; }

void duet_bpe_merge(const duet_bpe *b, int i, int32_t *left, int32_t *right) {
    *left = *right = -1;
    if (!b || i < 0 || i >= b->n_merges) return;
    *left = b->merges[i][0];
    *right = b->merges[i][1];
}

size_t duet_bpe_token_bytes(const duet_bpe *b, int32_t id, char *out, size_t cap) {
    if (!b || !b->learned || id < 0 || id >= 256 + b->n_merges) return 0;
    size_t n = b->tok_len[id];
    memcpy(out, b->tok_bytes[id], n < cap ? n : cap);
    return n;
}

/* bytes_to_unicode() of GPT-2: printable Latin-1 bytes stand for themselves,
 * the rest map in order to code points 256, 257, ... */
void duet_bpe_byte_symbol(unsigned char c, char out[4]) {
    unsigned cp;
    if ((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174) cp = c;
    else {
        unsigned n = 0;
        for (unsigned x = 0; x < c; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) n++;
        cp = 256 + n;
    }
    if (cp < 0x80) { out[0] = (char)cp; out[1] = 0; }
    else { out[0] = (char)(0xc0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3f)); out[2] = 0; }
}

/* Token text in the vocabulary's symbol alphabet (each byte -> its symbol). */
static char *symbol_string(const char *bytes, uint32_t n) {
    char *s = malloc((size_t)n * 2 + 1), *w = s;
    if (!s) return NULL;
    for (uint32_t i = 0; i < n; i++) {
        char sym[4];
        duet_bpe_byte_symbol((unsigned char)bytes[i], sym);
        size_t l = strlen(sym);
        memcpy(w, sym, l);
        w += l;
    }
    *w = 0;
    return s;
}

int duet_bpe_write_gguf(const duet_bpe *b, const char *path, duet_err *err) {
    if (!b || !b->learned) return duet_err_set(err, DUET_EINVAL, "bpe: nothing learned");
    int n_vocab = 256 + b->n_merges + 1;
    char **tokens = calloc((size_t)n_vocab, sizeof(char *));
    char **merges = calloc((size_t)b->n_merges + 1, sizeof(char *));
    int32_t *types = malloc(sizeof(int32_t) * n_vocab);
    duet_gguf_writer *w = duet_gguf_writer_new();
    int rc = (!tokens || !merges || !types || !w) ? DUET_ENOMEM : 0;
    for (int i = 0; !rc && i < n_vocab - 1; i++) {
        tokens[i] = symbol_string(b->tok_bytes[i], b->tok_len[i]);
        types[i] = 1; /* normal */
        if (!tokens[i]) rc = DUET_ENOMEM;
    }
    if (!rc) {
        tokens[n_vocab - 1] = strdup("<|endoftext|>");
        types[n_vocab - 1] = 3; /* control */
        if (!tokens[n_vocab - 1]) rc = DUET_ENOMEM;
    }
    for (int i = 0; !rc && i < b->n_merges; i++) {
        char *l = symbol_string(b->tok_bytes[b->merges[i][0]], b->tok_len[b->merges[i][0]]);
        char *r = symbol_string(b->tok_bytes[b->merges[i][1]], b->tok_len[b->merges[i][1]]);
        merges[i] = (l && r) ? malloc(strlen(l) + strlen(r) + 2) : NULL;
        if (merges[i]) sprintf(merges[i], "%s %s", l, r);
        else rc = DUET_ENOMEM;
        free(l);
        free(r);
    }
    if (rc) {
        duet_err_set(err, DUET_ENOMEM, "bpe: out of memory writing %s", path);
    } else {
        uint32_t eot = (uint32_t)(n_vocab - 1);
        duet_gguf_set_str(w, "general.name", "duet byte-level BPE");
        duet_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
        duet_gguf_set_str(w, "tokenizer.ggml.pre", "gpt-2");
        duet_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tokens, (uint64_t)n_vocab);
        duet_gguf_set_arr(w, "tokenizer.ggml.token_type", DUET_GGUF_INT32, types, (uint64_t)n_vocab);
        duet_gguf_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)merges, (uint64_t)b->n_merges);
        duet_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", eot);
        duet_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", eot);
        duet_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", eot);
        duet_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", 0);
        rc = duet_gguf_writer_write(w, path, err);
    }
    for (int i = 0; tokens && i < n_vocab; i++) free(tokens[i]);
    for (int i = 0; merges && i < b->n_merges; i++) free(merges[i]);
    free(tokens);
    free(merges);
    free(types);
    duet_gguf_writer_free(w);
    return rc;
}
