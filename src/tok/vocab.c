/* Vocabulary loading from GGUF tokenizer.ggml.* metadata, and accessors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

#define K_MODEL "tokenizer.ggml.model"
#define K_TOKENS "tokenizer.ggml.tokens"
#define K_SCORES "tokenizer.ggml.scores"
#define K_TYPES "tokenizer.ggml.token_type"

/* Copies the token texts into one pool. Empty texts get llama.cpp's
 * "[EMPTY_<id>]" stand-in so every token has a distinct, non-empty text. */
static int load_texts(duet_vocab *v, const duet_gguf *g, duet_err *err) {
    duet_gguf_vtype et;
    uint64_t n;
    int rc = duet_gguf_get_arr(g, K_TOKENS, &et, &n, NULL, err);
    if (rc == DUET_ENOTFOUND) return duet_err_set(err, DUET_EFORMAT, "key '" K_TOKENS "' not found (no vocabulary)");
    if (rc) return rc;
    if (et != DUET_GGUF_STRING) return duet_err_set(err, DUET_EFORMAT, "key '" K_TOKENS "' is not an array of strings");
    if (n == 0 || n > (1u << 30)) return duet_err_set(err, DUET_EFORMAT, "key '" K_TOKENS "': %llu tokens", (unsigned long long)n);
    v->n = (int32_t)n;
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if ((rc = duet_gguf_arr_str(g, K_TOKENS, i, &s, &len, err))) return rc;
        total += (len ? len : 32) + 1;
    }
    if (total > UINT32_MAX) return duet_err_set(err, DUET_EFORMAT, "key '" K_TOKENS "': token texts too large");
    v->pool = malloc(total);
    v->off = malloc(sizeof *v->off * (n + 1));
    if (!v->pool || !v->off) return duet_err_set(err, DUET_ENOMEM, "out of memory");
    uint32_t o = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        duet_gguf_arr_str(g, K_TOKENS, i, &s, &len, NULL);
        v->off[i] = o;
        if (len == 0) {
            o += (uint32_t)snprintf(v->pool + o, 32, "[EMPTY_%llu]", (unsigned long long)i) + 1;
        } else {
            memcpy(v->pool + o, s, len);
            v->pool[o + len] = 0;
            o += (uint32_t)len + 1;
        }
    }
    v->off[n] = o;
    return 0;
}

/* A numeric per-token array of the given element type; absent is fine. */
static int token_array(const duet_gguf *g, const char *key, duet_gguf_vtype want, int32_t n, const void **data,
                       duet_err *err) {
    duet_gguf_vtype et;
    uint64_t cnt;
    *data = NULL;
    int rc = duet_gguf_get_arr(g, key, &et, &cnt, data, err);
    if (rc == DUET_ENOTFOUND) return 0;
    if (rc) return rc;
    if (et != want)
        return duet_err_set(err, DUET_EFORMAT, "key '%s' has elements of type %s, expected %s", key,
                            duet_gguf_vtype_name(et), duet_gguf_vtype_name(want));
    if (cnt != (uint64_t)n)
        return duet_err_set(err, DUET_EFORMAT, "key '%s' has %llu elements, the vocabulary %d tokens", key,
                            (unsigned long long)cnt, n);
    return 0;
}

static int load_scores_types(duet_vocab *v, const duet_gguf *g, duet_err *err) {
    const void *sc, *ty;
    int rc;
    if ((rc = token_array(g, K_SCORES, DUET_GGUF_FLOAT32, v->n, &sc, err))) return rc;
    if ((rc = token_array(g, K_TYPES, DUET_GGUF_INT32, v->n, &ty, err))) return rc;
    v->score = malloc(sizeof *v->score * v->n);
    v->type = malloc((size_t)v->n);
    v->eog = calloc((size_t)v->n, 1);
    if (!v->score || !v->type || !v->eog) return duet_err_set(err, DUET_ENOMEM, "out of memory");
    for (int32_t i = 0; i < v->n; i++) {
        float s = 0;
        int32_t t = DUET_TOKEN_NORMAL;
        if (sc) memcpy(&s, (const char *)sc + 4 * (size_t)i, 4);
        if (ty) memcpy(&t, (const char *)ty + 4 * (size_t)i, 4);
        v->score[i] = s;
        v->type[i] = (uint8_t)(t >= DUET_TOKEN_NORMAL && t <= DUET_TOKEN_BYTE ? t : DUET_TOKEN_UNDEFINED);
    }
    return 0;
}

/* Optional integer key; absent leaves *id unchanged, out of range sets -1. */
static int special_id(const duet_gguf *g, const char *key, int32_t n, int32_t *id, duet_err *err) {
    int64_t x;
    int rc = duet_gguf_get_int(g, key, &x, err);
    if (rc == DUET_ENOTFOUND) return 0;
    if (rc) return rc;
    *id = x >= 0 && x < n ? (int32_t)x : -1;
    return 0;
}

static int opt_bool(const duet_gguf *g, const char *key, int *val, duet_err *err) {
    int64_t x;
    int rc = duet_gguf_get_int(g, key, &x, err); /* accepts bool and integers */
    if (rc == DUET_ENOTFOUND) return 0;
    if (rc) return rc;
    *val = x != 0;
    return 0;
}

/* End-of-generation tokens: ids from metadata plus the texts llama.cpp
 * recognises; eot is the first end-of-turn text found when not given. */
static void mark_eog(duet_vocab *v) {
    static const char *const eot_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                            "<|end_of_text|>", "<EOT>", "_<EOT>", "<end_of_utterance>"};
    for (size_t k = 0; k < sizeof eot_texts / sizeof *eot_texts; k++) {
        int32_t id = tok_strmap_get(&v->map, v, eot_texts[k], strlen(eot_texts[k]));
        if (id < 0) continue;
        v->eog[id] = 1;
        if (v->eot < 0) v->eot = id;
    }
    int32_t eom = tok_strmap_get(&v->map, v, "<|eom_id|>", 10);
    if (eom >= 0 && v->eom < 0) v->eom = eom;
    int32_t ids[3] = {v->eos, v->eot, v->eom};
    for (int k = 0; k < 3; k++)
        if (ids[k] >= 0) v->eog[ids[k]] = 1;
}

int duet_vocab_load(duet_vocab **out, const duet_gguf *g, duet_err *err) {
    if (!out || !g) return duet_err_set(err, DUET_EINVAL, "duet_vocab_load: NULL argument");
    *out = NULL;
    const char *model;
    size_t model_len;
    int rc = duet_gguf_get_str(g, K_MODEL, &model, &model_len, err);
    if (rc == DUET_ENOTFOUND) return duet_err_set(err, DUET_EFORMAT, "key '" K_MODEL "' not found (no tokenizer)");
    if (rc) return rc;
    duet_vocab_kind kind;
    if (model_len == 5 && !memcmp(model, "llama", 5)) kind = DUET_VOCAB_SPM;
    else if (model_len == 4 && !memcmp(model, "gpt2", 4)) kind = DUET_VOCAB_BPE;
    else
        return duet_err_set(err, DUET_EUNSUPPORTED, "%s '%.*s' is not supported (supported: llama, gpt2)", K_MODEL,
                            (int)(model_len > 64 ? 64 : model_len), model);

    duet_vocab *v = calloc(1, sizeof *v);
    if (!v) return duet_err_set(err, DUET_ENOMEM, "out of memory");
    v->kind = kind;
    if ((rc = load_texts(v, g, err)) || (rc = load_scores_types(v, g, err))) goto fail;
    if ((rc = tok_strmap_build(&v->map, v))) {
        duet_err_set(err, rc, "out of memory");
        goto fail;
    }

    /* defaults as in llama.cpp: SPM has bos 1, eos 2, unk 0 */
    v->bos = v->eos = v->eot = v->eom = v->unk = v->pad = v->sep = -1;
    if (kind == DUET_VOCAB_SPM) {
        v->bos = v->n > 1 ? 1 : -1;
        v->eos = v->n > 2 ? 2 : -1;
        v->unk = 0;
        v->add_bos = 1;
        v->add_space_prefix = 1;
        if ((rc = tok_spm_init(v, err))) goto fail;
    } else {
        if ((rc = tok_bpe_init(v, g, err))) goto fail;
        v->add_bos = v->pre->add_bos;
    }
    if ((rc = special_id(g, "tokenizer.ggml.bos_token_id", v->n, &v->bos, err)) ||
        (rc = special_id(g, "tokenizer.ggml.eos_token_id", v->n, &v->eos, err)) ||
        (rc = special_id(g, "tokenizer.ggml.eot_token_id", v->n, &v->eot, err)) ||
        (rc = special_id(g, "tokenizer.ggml.eom_token_id", v->n, &v->eom, err)) ||
        (rc = special_id(g, "tokenizer.ggml.unknown_token_id", v->n, &v->unk, err)) ||
        (rc = special_id(g, "tokenizer.ggml.padding_token_id", v->n, &v->pad, err)) ||
        (rc = special_id(g, "tokenizer.ggml.seperator_token_id", v->n, &v->sep, err)) ||
        (rc = opt_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos, err)) ||
        (rc = opt_bool(g, "tokenizer.ggml.add_eos_token", &v->add_eos, err)) ||
        (rc = opt_bool(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix, err)))
        goto fail;
    if (kind == DUET_VOCAB_BPE) v->add_space_prefix = 0;
    mark_eog(v);

    const char *tmpl;
    size_t tmpl_len;
    rc = duet_gguf_get_str(g, "tokenizer.chat_template", &tmpl, &tmpl_len, err);
    if (rc == 0) {
        if (!(v->chat_template = malloc(tmpl_len + 1))) {
            rc = duet_err_set(err, DUET_ENOMEM, "out of memory");
            goto fail;
        }
        memcpy(v->chat_template, tmpl, tmpl_len);
        v->chat_template[tmpl_len] = 0;
    } else if (rc != DUET_ENOTFOUND) {
        goto fail;
    }
    if ((rc = tok_pieces_build(v)) || (rc = tok_trie_build(v))) {
        duet_err_set(err, rc, "out of memory");
        goto fail;
    }
    *out = v;
    return 0;
fail:
    duet_vocab_free(v);
    return rc;
}

int duet_vocab_load_file(duet_vocab **out, const char *path, duet_err *err) {
    duet_gguf *g = NULL;
    int rc = duet_gguf_open(&g, path, err);
    if (rc) return rc;
    rc = duet_vocab_load(out, g, err);
    if (rc) duet_err_prefix(err, "%s", path);
    duet_gguf_close(g);
    return rc;
}

void duet_vocab_free(duet_vocab *v) {
    if (!v) return;
    tok_bpe_free(v);
    tok_strmap_free(&v->map);
    free(v->pool);
    free(v->off);
    free(v->score);
    free(v->type);
    free(v->eog);
    free(v->piece_pool);
    free(v->piece_off);
    free(v->chat_template);
    free(v->trie);
    free(v);
}

duet_vocab_kind duet_vocab_type(const duet_vocab *v) { return v->kind; }
const char *duet_vocab_pre(const duet_vocab *v) { return v->pre ? v->pre->name : ""; }
int32_t duet_vocab_n(const duet_vocab *v) { return v->n; }
int32_t duet_vocab_bos(const duet_vocab *v) { return v->bos; }
int32_t duet_vocab_eos(const duet_vocab *v) { return v->eos; }
int32_t duet_vocab_eot(const duet_vocab *v) { return v->eot; }
int32_t duet_vocab_unk(const duet_vocab *v) { return v->unk; }
int32_t duet_vocab_pad(const duet_vocab *v) { return v->pad; }
int32_t duet_vocab_sep(const duet_vocab *v) { return v->sep; }
int duet_vocab_add_bos(const duet_vocab *v) { return v->add_bos; }
int duet_vocab_add_eos(const duet_vocab *v) { return v->add_eos; }
const char *duet_vocab_chat_template(const duet_vocab *v) { return v->chat_template; }

int duet_vocab_is_eog(const duet_vocab *v, int32_t id) { return id >= 0 && id < v->n && v->eog[id]; }

const char *duet_vocab_text(const duet_vocab *v, int32_t id, size_t *len) {
    if (id < 0 || id >= v->n) return NULL;
    size_t l;
    const char *t = tok_text(v, id, &l);
    if (len) *len = l;
    return t;
}

int duet_vocab_token_type(const duet_vocab *v, int32_t id) { return id >= 0 && id < v->n ? v->type[id] : -1; }
float duet_vocab_score(const duet_vocab *v, int32_t id) { return id >= 0 && id < v->n ? v->score[id] : 0.0f; }

int32_t duet_vocab_find(const duet_vocab *v, const char *s, size_t len) {
    return s ? tok_strmap_get(&v->map, v, s, len) : -1;
}
