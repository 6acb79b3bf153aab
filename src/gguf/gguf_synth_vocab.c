/* Synthetic tokenizer vocabularies for duet synth: a SentencePiece-style
 * ("llama") and a GPT-2 byte-level BPE ("gpt2") vocabulary of any size, laid
 * out like the ref-models' (special tokens, byte tokens, then pieces). The
 * first pieces come from byte-pair merges over a small built-in English text,
 * so ordinary text tokenizes into sensible pieces; the rest are seeded random
 * concatenations of earlier pieces. Every piece is the concatenation of two
 * earlier ones, so both tokenizers can reach it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf_synth_vocab.h"

static const char CORPUS[] =
    "once upon a time there was a little girl named lily she loved to play outside in the park "
    "one day she saw a big red ball under a tree she wanted to play with it so she ran to the tree "
    "her mom said be careful lily the ball is near the water lily was happy and she played with "
    "the ball all day then a small dog came and wanted the ball too they played together and "
    "became good friends the sun was warm and the sky was blue at the end of the day lily went "
    "home with her mom and told her dad about the dog he smiled and said that is a very nice "
    "story tom had a toy car that he liked very much he took it everywhere he went it was fast "
    "and shiny one morning the car was gone tom looked in his room under his bed and in the "
    "kitchen but he could not find it he felt sad his sister sue helped him look they found "
    "the car in the garden next to a flower tom said thank you and gave sue a big hug the "
    "children learned that sharing and helping each other makes everyone happy";

#define SPM_SPACE "\xe2\x96\x81" /* U+2581, SentencePiece's word boundary */
#define GPT2_SPACE "\xc4\xa0"    /* U+0120, GPT-2's symbol for the byte 0x20 */

/* Incremental set of token strings (open addressing over token ids). */
typedef struct {
    int64_t *slot; /* id + 1; 0 empty */
    uint64_t mask;
} str_set;

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static int64_t set_find(const str_set *set, char *const *tok, const char *s) {
    for (uint64_t h = hash_str(s) & set->mask; set->slot[h]; h = (h + 1) & set->mask)
        if (!strcmp(tok[set->slot[h] - 1], s)) return set->slot[h] - 1;
    return -1;
}

static void set_add(str_set *set, const char *s, int64_t id) {
    uint64_t h = hash_str(s) & set->mask;
    while (set->slot[h]) h = (h + 1) & set->mask;
    set->slot[h] = id + 1;
}

static uint64_t next_u64(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct {
    synth_vocab *v;
    str_set set;
    int64_t cap;          /* n_vocab */
    int gpt2;
} builder;

/* Appends a normal token; returns its id, the existing id if the string is
 * already a token, or -1 when the vocabulary is full / out of memory. */
static int64_t add_token(builder *b, const char *s, int32_t type, float score) {
    int64_t id = set_find(&b->set, b->v->tokens, s);
    if (id >= 0) return id;
    if (b->v->n_tokens >= b->cap) return -1;
    id = b->v->n_tokens;
    if (!(b->v->tokens[id] = strdup(s))) return -1;
    b->v->types[id] = type;
    b->v->scores[id] = score;
    set_add(&b->set, b->v->tokens[id], id);
    b->v->n_tokens++;
    return id;
}

/* Merges tokens l and r: the piece left+right gets an id (a new one, or the
 * existing token with that text) and, for gpt2, the merge "left right" is
 * recorded. record_existing: also record a merge whose result already exists
 * (BPE training can reach one string two ways). Returns 0 with *out set, 1 if
 * the result exists and was not recorded, -1 when full or out of memory. */
static int add_merge(builder *b, int64_t l, int64_t r, int record_existing, int64_t *out) {
    const char *ls = b->v->tokens[l], *rs = b->v->tokens[r];
    size_t nl = strlen(ls), nr = strlen(rs);
    char buf[256];
    if (nl + nr >= sizeof buf) return 1;
    memcpy(buf, ls, nl);
    memcpy(buf + nl, rs, nr + 1);
    int64_t id = set_find(&b->set, b->v->tokens, buf);
    if (id >= 0 && !record_existing) return 1;
    if (id < 0 && (id = add_token(b, buf, 1, 0.0f)) < 0) return -1;
    if (b->gpt2) {
        char *m = malloc(nl + nr + 2);
        if (!m) return -1;
        memcpy(m, ls, nl);
        m[nl] = ' ';
        memcpy(m + nl + 1, rs, nr + 1);
        b->v->merges[b->v->n_merges++] = m;
    }
    *out = id;
    return 0;
}

/* GPT-2's bytes_to_unicode: printable latin-1 bytes stand for themselves,
 * the others map to U+0100.. in byte order. Writes UTF-8 into out. */
static void gpt2_byte_symbol(int byte, char out[4]) {
    int cp = byte, k = 0;
    int printable = (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || (byte >= 174 && byte <= 255);
    if (!printable) {
        for (int c = 0; c < byte; c++)
            if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255))) k++;
        cp = 256 + k;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        out[2] = 0;
    }
}

typedef struct {
    int64_t sym[64];
    int n;
    int count;
} word;

typedef struct {
    int64_t l, r;
    int count;
} pair;

static int cmp_pair(const void *a, const void *b) {
    const pair *x = a, *y = b;
    if (x->l != y->l) return x->l < y->l ? -1 : 1;
    return x->r < y->r ? -1 : x->r > y->r;
}

/* Byte-pair merges over the corpus words until every word is one token or
 * the vocabulary is full. Ties go to the lowest (left, right) ids. */
static int bpe_over_corpus(builder *b, word *w, int n_words) {
    pair *pairs = malloc(sizeof *pairs * 64 * (size_t)(n_words ? n_words : 1));
    if (!pairs) return -1;
    for (;;) {
        size_t np = 0;
        for (int i = 0; i < n_words; i++)
            for (int k = 0; k + 1 < w[i].n; k++) pairs[np++] = (pair){w[i].sym[k], w[i].sym[k + 1], w[i].count};
        if (!np) break;
        qsort(pairs, np, sizeof *pairs, cmp_pair);
        pair best = {-1, -1, 0};
        for (size_t i = 0; i < np;) {
            pair cur = pairs[i++];
            while (i < np && pairs[i].l == cur.l && pairs[i].r == cur.r) cur.count += pairs[i++].count;
            if (cur.count > best.count) best = cur; /* sorted order: the first of equals wins */
        }
        int64_t id;
        int rc = add_merge(b, best.l, best.r, 1, &id);
        if (rc) {
            free(pairs);
            return b->v->n_tokens >= b->cap ? 0 : -1;
        }
        for (int i = 0; i < n_words; i++) {
            int o = 0;
            for (int k = 0; k < w[i].n; k++) {
                if (k + 1 < w[i].n && w[i].sym[k] == best.l && w[i].sym[k + 1] == best.r) {
                    w[i].sym[o++] = id;
                    k++;
                } else {
                    w[i].sym[o++] = w[i].sym[k];
                }
            }
            w[i].n = o;
        }
    }
    free(pairs);
    return 0;
}

/* Splits the corpus into distinct words with counts, each as a sequence of
 * base-symbol ids (marker first). sym_of maps a byte to its token id. */
static int corpus_words(word *w, int cap, const int64_t *sym_of, int64_t marker) {
    int n = 0;
    const char *p = CORPUS;
    while (*p) {
        while (*p == ' ') p++;
        const char *s = p;
        while (*p && *p != ' ') p++;
        int len = (int)(p - s);
        if (!len || len > 60) continue;
        word cur = {.n = 0, .count = 1};
        cur.sym[cur.n++] = marker;
        for (int i = 0; i < len; i++) cur.sym[cur.n++] = sym_of[(uint8_t)s[i]];
        int j;
        for (j = 0; j < n; j++)
            if (w[j].n == cur.n && !memcmp(w[j].sym, cur.sym, sizeof(int64_t) * (size_t)cur.n)) break;
        if (j < n) w[j].count++;
        else if (n < cap) w[n++] = cur;
    }
    return n;
}

/* Seeded random concatenations of existing pieces fill the rest. */
static int random_fill(builder *b, int64_t lo, uint64_t seed) {
    uint64_t s = seed;
    int64_t tries = 0;
    while (b->v->n_tokens < b->cap) {
        int64_t span = b->v->n_tokens - lo;
        int64_t l = lo + (int64_t)(next_u64(&s) % (uint64_t)span), r = lo + (int64_t)(next_u64(&s) % (uint64_t)span);
        if (strlen(b->v->tokens[l]) + strlen(b->v->tokens[r]) > 16) {
            if (++tries > 10000000) return -1;
            continue;
        }
        int64_t id;
        int rc = add_merge(b, l, r, 0, &id);
        if (rc < 0) return -1;
        if (rc > 0 && ++tries > 10000000) return -1;
    }
    return 0;
}

void synth_vocab_free(synth_vocab *v) {
    if (!v) return;
    for (int64_t i = 0; i < v->n_tokens; i++) free(v->tokens[i]);
    for (int64_t i = 0; i < v->n_merges; i++) free(v->merges[i]);
    free(v->tokens);
    free(v->merges);
    free(v->scores);
    free(v->types);
    memset(v, 0, sizeof *v);
}

/* Arrays for n_vocab tokens; pieces stop at n_vocab - gpt2 (gpt2 keeps the
 * last id for <|endoftext|>). */
static int builder_init(builder *b, synth_vocab *v, int64_t n_vocab, int gpt2) {
    memset(v, 0, sizeof *v);
    memset(b, 0, sizeof *b);
    b->v = v;
    b->cap = n_vocab - gpt2;
    b->gpt2 = gpt2;
    uint64_t cap = 16;
    while (cap < (uint64_t)n_vocab * 2) cap <<= 1;
    b->set.slot = calloc(cap, sizeof *b->set.slot);
    b->set.mask = cap - 1;
    v->tokens = calloc((size_t)n_vocab, sizeof *v->tokens);
    v->scores = calloc((size_t)n_vocab, sizeof *v->scores);
    v->types = calloc((size_t)n_vocab, sizeof *v->types);
    v->merges = gpt2 ? calloc((size_t)n_vocab, sizeof *v->merges) : NULL;
    return b->set.slot && v->tokens && v->scores && v->types && (!gpt2 || v->merges) ? 0 : -1;
}

int synth_vocab_build(synth_vocab *v, int gpt2, int64_t n_vocab, uint64_t seed, duet_err *err) {
    int64_t min = gpt2 ? 257 : 259;
    if (n_vocab < min || n_vocab > 100000000)
        return duet_err_set(err, DUET_EINVAL, "n_vocab %lld out of range (%s vocabularies need at least %lld)",
                            (long long)n_vocab, gpt2 ? "gpt2" : "llama", (long long)min);
    builder b;
    word *words = NULL;
    int rc = builder_init(&b, v, n_vocab, gpt2);
    if (rc) goto oom;
    int64_t sym_of[256], marker;
    if (!(words = malloc(256 * sizeof *words))) goto oom;
    if (!gpt2) {
        add_token(&b, "<unk>", 2, 0.0f);
        add_token(&b, "<s>", 3, 0.0f);
        add_token(&b, "</s>", 3, 0.0f);
        for (int i = 0; i < 256; i++) {
            char s[8];
            snprintf(s, sizeof s, "<0x%02X>", i);
            add_token(&b, s, 6, 0.0f);
        }
        v->first_piece = v->n_tokens;
        /* single characters of the corpus (and the boundary) as the first pieces */
        marker = add_token(&b, SPM_SPACE, 1, 0.0f);
        for (int i = 0; i < 256; i++) sym_of[i] = -1;
        for (const char *p = CORPUS; *p; p++) {
            if (*p == ' ' || sym_of[(uint8_t)*p] >= 0) continue;
            char s[2] = {*p, 0};
            sym_of[(uint8_t)*p] = add_token(&b, s, 1, 0.0f);
        }
        if (v->n_tokens >= b.cap) goto full;
    } else {
        for (int i = 0; i < 256; i++) {
            char s[4];
            gpt2_byte_symbol(i, s);
            sym_of[i] = add_token(&b, s, 1, 0.0f);
        }
        v->first_piece = 0;
        marker = sym_of[' '];
    }
    if (marker < 0) goto full;
    int n_words;
    n_words = corpus_words(words, 256, sym_of, marker);
    if (bpe_over_corpus(&b, words, n_words)) goto oom;
    if (random_fill(&b, gpt2 ? 0 : v->first_piece, seed)) goto oom;
full:
    if (gpt2 && !(v->tokens[v->n_tokens] = strdup("<|endoftext|>"))) goto oom;
    if (gpt2) v->types[v->n_tokens++] = 3;
    if (!gpt2)
        for (int64_t i = v->first_piece; i < v->n_tokens; i++) v->scores[i] = -(float)(i - v->first_piece + 1);
    else
        for (int64_t i = 0; i < v->n_tokens; i++) v->scores[i] = 0.0f;
    free(words);
    free(b.set.slot);
    return 0;
oom:
    free(words);
    free(b.set.slot);
    synth_vocab_free(v);
    return duet_err_set(err, DUET_ENOMEM, "out of memory building a %lld-token vocabulary", (long long)n_vocab);
}
