/* internal: not part of the public API; may change. */
/* Private to src/tok/: the vocabulary layout, hash maps and the pieces of the
 * tokenization pipeline (special-token partition -> SPM or BPE). */
#ifndef DUET_TOK_INTERNAL_H
#define DUET_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "duet/tok.h"

/* ---- string -> id map (open addressing, power-of-two capacity) ---------- */
typedef struct tok_strslot {
    uint32_t hash;   /* hash of the text */
    int32_t id;      /* -1: empty */
    uint32_t off;    /* text = pool + off ... */
    uint32_t len;    /* ... of len bytes (kept here so a probe touches one cache line) */
} tok_strslot;

typedef struct tok_strmap {
    tok_strslot *slot; /* (cap) */
    uint32_t cap;      /* power of two */
    uint64_t *filter;  /* (TOK_FILTER_BITS / 64) bit per hash: most failed lookups stop here, in cache */
} tok_strmap;
#define TOK_FILTER_BITS (1u << 20)

uint32_t tok_hash_bytes(const void *p, size_t n);

/* ---- (left, right) -> merge map for byte-level BPE ---------------------- */
typedef struct tok_merge {
    uint64_t key;    /* (uint64)left << 32 | right; UINT64_MAX = empty */
    int32_t rank;    /* position in tokenizer.ggml.merges (lower merges first) */
    int32_t result;  /* symbol id of left+right (a token id or a pseudo id) */
} tok_merge;

typedef struct tok_mergemap {
    tok_merge *slot; /* (cap) */
    uint32_t cap;    /* power of two */
} tok_mergemap;

/* One node of the byte trie over the texts of special tokens. */
typedef struct tok_trie_node {
    int32_t child;   /* first child node, -1 if none */
    int32_t sibling; /* next sibling, -1 if none */
    int32_t id;      /* token ending here, -1 if none */
    uint8_t byte;    /* edge label from the parent */
    uint8_t always;  /* 1: the token ending here is matched without PARSE_SPECIAL */
} tok_trie_node;

/* A pre-tokenizer family: one table row per tokenizer.ggml.pre value group. */
typedef struct tok_pretok {
    const char *name;        /* canonical name (reported by duet_vocab_pre) */
    const char *aliases[8];  /* other tokenizer.ggml.pre values, NULL-terminated */
    const char *regex;       /* Hugging Face's split regex, verbatim */
    int ignore_merges;       /* whole piece found in the vocab -> that token (Llama 3) */
    int add_bos;             /* default of add_bos_token when the key is absent */
} tok_pretok;

const tok_pretok *tok_pretok_find(const char *name); /* NULL if unknown */
/* Names of all rows and aliases, ", "-separated, into buf (for error messages). */
const char *tok_pretok_names(char *buf, size_t cap);
/* The row's regex compiled (pcre2_code *, JIT when available); NULL + err on failure. */
void *tok_pretok_compile(const tok_pretok *pt, duet_err *err);
void tok_pretok_release(void *re);

/* Finds successive regex matches in one text (owns the PCRE2 match data). */
typedef struct tok_splitter tok_splitter;
tok_splitter *tok_splitter_new(const duet_vocab *v);
void tok_splitter_free(tok_splitter *s);
/* 1 and the match [*ms, *me) at or after pos; 0 if none; -1 on a matcher failure. */
int tok_splitter_next(tok_splitter *s, const char *text, size_t len, size_t pos, size_t *ms, size_t *me);

struct duet_vocab {
    duet_vocab_kind kind;
    int32_t n;                 /* number of tokens */
    char *pool;                /* token texts, each NUL-terminated */
    uint32_t *off;             /* (n + 1) start of token i's text in pool; len = off[i+1]-off[i]-1 */
    float *score;              /* (n) */
    uint8_t *type;             /* (n) DUET_TOKEN_* */
    uint8_t *eog;              /* (n) 1 if end-of-generation */
    tok_strmap map;            /* text -> id; for duplicate texts the last id wins (llama.cpp) */

    /* bytes each token stands for (see duet_token_to_piece), without the special gate */
    char *piece_pool;
    uint32_t *piece_off;       /* (n + 1) */

    int32_t bos, eos, eot, eom, unk, pad, sep;
    int add_bos, add_eos;
    char *chat_template;       /* NUL-terminated copy or NULL */

    /* special-token partition */
    tok_trie_node *trie;       /* node 0 is the root */
    int32_t n_trie;
    int32_t root_child[256];   /* trie child of the root per first byte, -1 if none */
    uint8_t first_always[256]; /* 1 if a token matched without PARSE_SPECIAL starts with this byte */
    int n_first_always;        /* how many bytes have first_always set */
    int n_first_any;           /* how many bytes start any special token */
    uint8_t one_first_always;  /* the byte, when n_first_always == 1 (memchr scan) */
    uint8_t one_first_any;     /* the byte, when n_first_any == 1 */

    /* SPM */
    int add_space_prefix;
    int32_t byte_tok[256];     /* <0xXX> (or the 1-byte text) id per byte, -1 if none */
    int spm_split_words;       /* 1 if no token has U+2581 after a non-U+2581 char: words are independent */
    uint64_t spm_ascii_pairs[128][2]; /* bit b of [a]: some token has ASCII bytes a, b adjacent */

    /* BPE */
    const tok_pretok *pre;
    void *re;                  /* pcre2_code * (JIT compiled) */
    tok_mergemap merges;
    int32_t byte_sym[256];     /* symbol id of each byte's byte-to-unicode text */
    int32_t n_pseudo;          /* symbols that appear in merges but are not tokens: ids n .. n+n_pseudo-1 */
    char **pseudo_text;        /* (n_pseudo) their byte-to-unicode texts, NUL-terminated */
};

/* Token text (stored form) and length. */
static inline const char *tok_text(const duet_vocab *v, int32_t id, size_t *len) {
    *len = v->off[id + 1] - v->off[id] - 1;
    return v->pool + v->off[id];
}

/* ---- maps ---- */
int tok_strmap_build(tok_strmap *m, const duet_vocab *v);
int32_t tok_strmap_get(const tok_strmap *m, const duet_vocab *v, const char *s, size_t n);
void tok_strmap_free(tok_strmap *m);
int tok_mergemap_init(tok_mergemap *m, uint32_t n_expected);
/* Inserts unless (left,right) is present already (first rank wins, as llama.cpp's emplace). */
void tok_mergemap_put(tok_mergemap *m, int32_t left, int32_t right, int32_t rank, int32_t result);
const tok_merge *tok_mergemap_get(const tok_mergemap *m, int32_t left, int32_t right);
void tok_mergemap_free(tok_mergemap *m);

/* ---- UTF-8 ---- */
/* llama.cpp's unicode_len_utf8: sequence length implied by a lead byte (1 for continuation bytes). */
static inline int tok_utf8_len(uint8_t c) {
    static const uint8_t len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len[c >> 4];
}
/* Length of the valid UTF-8 sequence at s (strict: no overlongs, surrogates
 * or code points above U+10FFFF), 0 if invalid or truncated. */
int tok_utf8_valid_len(const uint8_t *s, size_t n);
/* Encodes cp; returns the byte count (1..4). */
int tok_utf8_put(uint32_t cp, char *out);
/* GPT-2 byte-to-unicode: code point standing for byte b, and the inverse
 * (-1 for code points that stand for no byte). O(1). */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp);

/* ---- output buffer shared by the tokenizers ----
 * Fixed (duet_tokenize: ids past cap are counted, not stored) or growable
 * (duet_tokenize_alloc: realloc'd as needed; a failed realloc sets oom). */
typedef struct tok_out {
    int32_t *ids;
    int64_t cap;
    int64_t n;
    int growable;
    int oom;
} tok_out;
int tok_out_grow(tok_out *o);
static inline void tok_emit(tok_out *o, int32_t id) {
    if (o->n >= o->cap && !(o->growable && tok_out_grow(o) == 0)) {
        o->n++;
        return;
    }
    o->ids[o->n++] = id;
}

/* ---- per-call cache of piece -> ids ---- */
#define TOK_CACHE_MAX_KEY 48    /* longer pieces are not cached */
#define TOK_CACHE_MIN_TEXT 1024 /* shorter fragments run without a cache */
typedef struct tok_cache tok_cache;
tok_cache *tok_cache_new(void); /* NULL on ENOMEM (callers then run uncached) */
void tok_cache_free(tok_cache *c);
const int32_t *tok_cache_get(const tok_cache *c, const void *key, size_t len, uint32_t hash, int *n);
void tok_cache_put(tok_cache *c, const void *key, size_t len, uint32_t hash, const int32_t *ids, int n);

/* ---- pipeline ---- */
/* SPM on one raw fragment (space prefix already decided by the caller). */
int tok_spm_fragment(const duet_vocab *v, const char *text, size_t len, int add_prefix, tok_out *o);
/* BPE on one raw fragment (may contain invalid UTF-8). */
int tok_bpe_fragment(const duet_vocab *v, const char *text, size_t len, tok_out *o);

/* ---- loading pieces ---- */
int tok_bpe_init(duet_vocab *v, const duet_gguf *g, duet_err *err);
void tok_bpe_free(duet_vocab *v);
int tok_spm_init(duet_vocab *v, duet_err *err);
int tok_pieces_build(duet_vocab *v);
int tok_trie_build(duet_vocab *v);

#endif
