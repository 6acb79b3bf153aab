/* duet_tokenize: special-token partition, then SPM or BPE on the raw text
 * between special tokens (llama.cpp's tokenizer_st_partition + tokenize).
 *
 * Special tokens are found with a byte trie, leftmost-longest (Hugging Face's
 * added-token matching). Control and unknown tokens take part only with
 * DUET_TOK_PARSE_SPECIAL; user-defined tokens always do. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

#define MAX_TEXT ((size_t)1 << 29) /* 512 MiB: 3 bytes per byte after escaping still fit int32 */

static int trie_add(duet_vocab *v, int32_t *cap, const char *t, size_t len, int32_t id, int always) {
    int32_t node = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)t[i];
        int32_t ch = node == 0 ? v->root_child[c] : v->trie[node].child;
        if (node != 0)
            while (ch >= 0 && v->trie[ch].byte != c) ch = v->trie[ch].sibling;
        if (ch < 0) {
            if (v->n_trie == *cap) {
                int32_t nc = *cap * 2;
                tok_trie_node *p = realloc(v->trie, sizeof *p * (size_t)nc);
                if (!p) return DUET_ENOMEM;
                v->trie = p;
                *cap = nc;
            }
            ch = v->n_trie++;
            v->trie[ch] = (tok_trie_node){-1, -1, -1, c, 0};
            if (node == 0) {
                v->root_child[c] = ch;
            } else {
                v->trie[ch].sibling = v->trie[node].child;
                v->trie[node].child = ch;
            }
        }
        node = ch;
    }
    v->trie[node].id = id; /* same text twice: the last id wins, as in the text map */
    v->trie[node].always = (uint8_t)always;
    if (always) v->first_always[(uint8_t)t[0]] = 1;
    return 0;
}

int tok_trie_build(duet_vocab *v) {
    int32_t cap = 64;
    v->trie = malloc(sizeof *v->trie * (size_t)cap);
    if (!v->trie) return DUET_ENOMEM;
    v->trie[0] = (tok_trie_node){-1, -1, -1, 0, 0};
    v->n_trie = 1;
    memset(v->root_child, 0xFF, sizeof v->root_child);
    memset(v->first_always, 0, sizeof v->first_always);
    for (int32_t id = 0; id < v->n; id++) {
        int t = v->type[id];
        if (t != DUET_TOKEN_CONTROL && t != DUET_TOKEN_UNKNOWN && t != DUET_TOKEN_USER_DEFINED) continue;
        size_t len;
        const char *s = tok_text(v, id, &len);
        if (trie_add(v, &cap, s, len, id, t == DUET_TOKEN_USER_DEFINED)) return DUET_ENOMEM;
    }
    v->n_first_always = v->n_first_any = 0;
    for (int b = 0; b < 256; b++) {
        if (v->first_always[b]) {
            v->n_first_always++;
            v->one_first_always = (uint8_t)b;
        }
        if (v->root_child[b] >= 0) {
            v->n_first_any++;
            v->one_first_any = (uint8_t)b;
        }
    }
    return 0;
}

/* Longest special token starting at text[0..len), 0 if none; *id gets it. */
static size_t match_special(const duet_vocab *v, const uint8_t *text, size_t len, int parse_special, int32_t *id) {
    int32_t node = v->root_child[text[0]];
    size_t best = 0;
    for (size_t i = 1; node >= 0; i++) {
        const tok_trie_node *nd = &v->trie[node];
        if (nd->id >= 0 && (parse_special || nd->always)) {
            best = i;
            *id = nd->id;
        }
        if (i == len) break;
        int32_t ch = nd->child;
        while (ch >= 0 && v->trie[ch].byte != text[i]) ch = v->trie[ch].sibling;
        node = ch;
    }
    return best;
}

static int raw_fragment(const duet_vocab *v, const char *text, size_t len, int *prev_special, tok_out *o) {
    if (len == 0) return 0;
    int rc;
    if (v->kind == DUET_VOCAB_SPM)
        rc = tok_spm_fragment(v, text, len, v->add_space_prefix && *prev_special, o);
    else
        rc = tok_bpe_fragment(v, text, len, o);
    *prev_special = 0;
    return rc;
}

static int64_t tokenize(const duet_vocab *v, const char *text, size_t len, tok_out *o, int flags) {
    if (flags & DUET_TOK_ADD_BOS && v->bos >= 0) tok_emit(o, v->bos);
    int parse_special = (flags & DUET_TOK_PARSE_SPECIAL) != 0;
    int prev_special = 1; /* SPM: the first fragment gets the space prefix, as after a special token */
    const uint8_t *u = (const uint8_t *)text;
    size_t start = 0;
    int n_first = parse_special ? v->n_first_any : v->n_first_always;
    uint8_t one_first = parse_special ? v->one_first_any : v->one_first_always;
    for (size_t p = 0; n_first > 0 && p < len; p++) {
        if (n_first == 1) { /* the usual case ('<'): let memchr find candidates */
            const uint8_t *q = memchr(u + p, one_first, len - p);
            if (!q) break;
            p = (size_t)(q - u);
        }
        if (v->root_child[u[p]] < 0 || (!parse_special && !v->first_always[u[p]])) continue;
        int32_t id;
        size_t m = match_special(v, u + p, len - p, parse_special, &id);
        if (!m) continue;
        int rc = raw_fragment(v, text + start, p - start, &prev_special, o);
        if (rc) return rc;
        tok_emit(o, id);
        prev_special = 1;
        start = p + m;
        p = start - 1;
    }
    int rc = raw_fragment(v, text + start, len - start, &prev_special, o);
    if (rc) return rc;
    if (flags & DUET_TOK_ADD_EOS && v->eos >= 0) tok_emit(o, v->eos);
    return o->n;
}

int tok_out_grow(tok_out *o) {
    if (o->oom) return DUET_ENOMEM;
    int64_t cap = o->cap ? o->cap * 2 : 256;
    int32_t *p = realloc(o->ids, sizeof *p * (size_t)cap);
    if (!p) {
        o->oom = 1;
        return DUET_ENOMEM;
    }
    o->ids = p;
    o->cap = cap;
    return 0;
}

int duet_tokenize(const duet_vocab *v, const char *text, size_t len, int32_t *out, int cap, int flags) {
    if (!v || (!text && len) || (!out && cap > 0) || cap < 0) return DUET_EINVAL;
    if (len > MAX_TEXT) return DUET_ERANGE;
    tok_out o = {out, cap, 0, 0, 0};
    int64_t n = tokenize(v, text ? text : "", len, &o, flags);
    return n > INT_MAX ? DUET_ERANGE : (int)n;
}

int duet_tokenize_alloc(const duet_vocab *v, const char *text, size_t len, int flags, int32_t **ids) {
    if (!ids) return DUET_EINVAL;
    *ids = NULL;
    if (!v || (!text && len)) return DUET_EINVAL;
    if (len > MAX_TEXT) return DUET_ERANGE;
    tok_out o = {NULL, 0, 0, 1, 0};
    if (tok_out_grow(&o)) return DUET_ENOMEM;
    int64_t n = tokenize(v, text ? text : "", len, &o, flags);
    if (n >= 0 && o.oom) n = DUET_ENOMEM;
    if (n < 0) {
        free(o.ids);
        return (int)n;
    }
    *ids = o.ids;
    return (int)n;
}
