/* OpenAI's completion and chat shapes: request validation (each error names
 * its field, as OpenAI's `param` does) and the JSON of responses, stream
 * chunks (with per-token provenance) and the `duet` accounting object. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "server/openai.h"
#include "server/pipeline.h"

int srv_utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + (size_t)len > n) return 0;
        unsigned cp = len == 1 ? c : len == 2 ? c & 31 : len == 3 ? c & 15 : c & 7;
        for (int k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (p[i + k] & 63);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += (size_t)len;
    }
    return 1;
}

static int fail(srv_error *e, int status, const char *param, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(srv_error *e, int status, const char *param, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    e->status = status;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    return -1;
}

static int model_ctx(const srv_config *c, int mi) {
    if (c->models[mi].remote_url[0]) return srv_model_ctx(c, mi);
    const int train = duet_model_hparams(c->models[mi].model)->n_ctx_train;
    const int ctx = c->ctx > 0 ? c->ctx : train;
    /* models after the first (drafts, small models) keep to their trained context (sched.c) */
    return mi > 0 && train > 0 && train < ctx ? train : ctx;
}

int srv_profile_ctx(const srv_config *c, const srv_profile *p) {
    int ctx = model_ctx(c, p->model);
    if (p->kind == SRV_FUSE) /* every model sees every token: the shortest context */
        for (int i = 0; i < 2; i++) {
            const int mi = i ? p->tuned : p->draft;
            if (mi >= 0 && model_ctx(c, mi) < ctx) ctx = model_ctx(c, mi);
        }
    return ctx;
}

void srv_req_free(srv_req *r) {
    for (int i = 0; i < r->n_prompts; i++) free(r->prompt[i]), free(r->prompt_text[i]);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    srv_pipeline_free(r);
    memset(r, 0, sizeof *r);
}

/* ---- field readers: absent keeps the default; a wrong type or range fails ---- */

static const cJSON *field(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static int get_number(const cJSON *o, const char *k, double lo, double hi, double *out, srv_error *e) {
    const cJSON *v = field(o, k);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
        return fail(e, 400, k, "'%s' must be a number in [%g, %g]", k, lo, hi);
    *out = v->valuedouble;
    return 0;
}

static int get_int(const cJSON *o, const char *k, double lo, double hi, int *out, srv_error *e) {
    const cJSON *v = field(o, k);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
        return fail(e, 400, k, "'%s' must be an integer in [%.0f, %.0f]", k, lo, hi);
    *out = (int)v->valuedouble;
    return 0;
}

static int get_bool(const cJSON *o, const char *k, int *out, srv_error *e) {
    const cJSON *v = field(o, k);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) return fail(e, 400, k, "'%s' must be true or false", k);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int tokenize(const srv_config *c, const char *text, int flags, int32_t **ids, srv_error *e, const char *param) {
    int n = duet_tokenize_alloc(c->models[0].vocab, text, strlen(text), flags, ids);
    if (n < 0) return fail(e, 400, param, "'%s' could not be tokenized", param);
    if (n == 0) {
        free(*ids);
        *ids = NULL;
        return fail(e, 400, param, "'%s' is empty", param);
    }
    return n;
}

static int add_prompt(srv_req *r, int32_t *ids, int n, char *text, srv_error *e) {
    if (r->n_prompts == SRV_MAX_CHOICES) {
        free(ids), free(text);
        return fail(e, 400, "prompt", "at most %d prompts per request", SRV_MAX_CHOICES);
    }
    r->prompt[r->n_prompts] = ids;
    r->n_prompt[r->n_prompts] = n;
    r->prompt_text[r->n_prompts++] = text;
    return 0;
}

/* A list of token ids (JSON array of integers in the vocabulary). */
static int ids_of(const srv_config *c, const cJSON *a, int32_t **out, srv_error *e) {
    const int nv = duet_vocab_n(c->models[0].vocab), n = cJSON_GetArraySize(a);
    if (n == 0) return fail(e, 400, "prompt", "'prompt' holds an empty token list");
    int32_t *ids = malloc(sizeof *ids * (size_t)n);
    if (!ids) return fail(e, 500, "prompt", "out of memory");
    int i = 0;
    for (const cJSON *v = a->child; v; v = v->next, i++) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 || v->valuedouble >= nv) {
            free(ids);
            return fail(e, 400, "prompt", "'prompt' token %d is not an id in [0, %d)", i, nv);
        }
        ids[i] = (int32_t)v->valuedouble;
    }
    *out = ids;
    return n;
}

/* A text prompt: through the profile's pipeline (redact, compress) first,
 * so only what it leaves is tokenized (and sent on); the text kept for echo
 * is the client's own. */
static int text_prompt(const srv_config *c, srv_req *r, const char *text, int flags, srv_error *e) {
    char *sent = NULL;
    int32_t *ids;
    if (srv_pipeline_on(r) && srv_pipeline_text(c, r, text, &sent, "prompt", e) < 0) return -1;
    const int n = tokenize(c, sent ? sent : text, flags, &ids, e, "prompt");
    free(sent);
    if (n < 0) return -1;
    return add_prompt(r, ids, n, strdup(text), e);
}

/* A token-id prompt cannot be redacted: the profile's promise would not hold. */
static int ids_refused(const srv_req *r, srv_error *e) {
    if (!srv_pipeline_on(r)) return 0;
    return fail(e, 400, "prompt", "the profile '%s' runs a privacy pipeline on the prompt's text: send text, not "
                "token ids", r->prof.name);
}

static int parse_prompt(const srv_config *c, const cJSON *root, srv_req *r, srv_error *e) {
    const cJSON *p = field(root, "prompt");
    const duet_vocab *v = c->models[0].vocab;
    const int flags = duet_vocab_add_bos(v) ? DUET_TOK_ADD_BOS : 0;
    int32_t *ids;
    int n;
    if (!p) return fail(e, 400, "prompt", "'prompt' is required");
    if (cJSON_IsString(p)) return text_prompt(c, r, p->valuestring, flags, e);
    if (!cJSON_IsArray(p) || !p->child) return fail(e, 400, "prompt", "'prompt' must be a string, an array of strings or token ids");
    if (cJSON_IsNumber(p->child)) { /* one prompt as token ids */
        if (ids_refused(r, e) < 0 || (n = ids_of(c, p, &ids, e)) < 0) return -1;
        return add_prompt(r, ids, n, NULL, e);
    }
    for (const cJSON *q = p->child; q; q = q->next) {
        if (cJSON_IsString(q)) {
            if (text_prompt(c, r, q->valuestring, flags, e) < 0) return -1;
        } else if (cJSON_IsArray(q)) {
            if (ids_refused(r, e) < 0 || (n = ids_of(c, q, &ids, e)) < 0) return -1;
            if (add_prompt(r, ids, n, NULL, e) < 0) return -1;
        } else {
            return fail(e, 400, "prompt", "'prompt' array items must all be strings or token-id arrays");
        }
    }
    return 0;
}

static int parse_messages(const srv_config *c, const cJSON *root, srv_req *r, srv_error *e) {
    const cJSON *m = field(root, "messages");
    if (!cJSON_IsArray(m) || !m->child) return fail(e, 400, "messages", "'messages' must be a non-empty array");
    const int n = cJSON_GetArraySize(m);
    if (n > 256) return fail(e, 400, "messages", "at most 256 messages");
    duet_chat_msg *msgs = calloc((size_t)n, sizeof *msgs);
    char **owned = calloc((size_t)n, sizeof *owned);
    int rc = 0, i = 0;
    if (!msgs || !owned) rc = fail(e, 500, "messages", "out of memory");
    for (const cJSON *q = m->child; q && rc == 0; q = q->next, i++) {
        const cJSON *role = field(q, "role"), *content = field(q, "content");
        if (!cJSON_IsObject(q) || !cJSON_IsString(role)) {
            rc = fail(e, 400, "messages", "messages[%d] needs a 'role' string", i);
            break;
        }
        if (strcmp(role->valuestring, "system") && strcmp(role->valuestring, "user") &&
            strcmp(role->valuestring, "assistant") && strcmp(role->valuestring, "developer")) {
            rc = fail(e, 400, "messages", "messages[%d].role '%.32s' is not system, developer, user or assistant", i,
                      role->valuestring);
            break;
        }
        msgs[i].role = !strcmp(role->valuestring, "developer") ? "system" : role->valuestring;
        if (cJSON_IsString(content)) {
            msgs[i].content = content->valuestring;
        } else if (cJSON_IsArray(content)) { /* [{"type": "text", "text": ...}, ...] */
            size_t len = 0;
            for (const cJSON *part = content->child; part; part = part->next) {
                const cJSON *t = field(part, "text"), *ty = field(part, "type");
                if (!cJSON_IsString(t) || (ty && (!cJSON_IsString(ty) || strcmp(ty->valuestring, "text")))) {
                    rc = fail(e, 400, "messages", "messages[%d].content parts must be {\"type\": \"text\", \"text\": ...}", i);
                    break;
                }
                len += strlen(t->valuestring);
            }
            if (rc) break;
            owned[i] = malloc(len + 1);
            if (!owned[i]) { rc = fail(e, 500, "messages", "out of memory"); break; }
            owned[i][0] = 0;
            for (const cJSON *part = content->child; part; part = part->next) strcat(owned[i], field(part, "text")->valuestring);
            msgs[i].content = owned[i];
        } else {
            rc = fail(e, 400, "messages", "messages[%d].content must be a string or an array of text parts", i);
        }
        /* the pipeline works on each message's content, before the template: the template's role markers
           and special tokens stay as they are (a listed name "user" or "assistant" would otherwise be
           redacted out of them, and compress could drop them), and every placeholder reaches the
           tokenizer whole */
        if (rc == 0 && srv_pipeline_on(r) && msgs[i].content[0]) {
            char *sent;
            if (srv_pipeline_text(c, r, msgs[i].content, &sent, "messages", e) < 0) {
                rc = -1;
                break;
            }
            free(owned[i]);
            msgs[i].content = owned[i] = sent;
        }
    }
    char *text = NULL;
    if (rc == 0) {
        const duet_vocab *v = c->models[0].vocab;
        duet_chat_template t = DUET_CHAT_CHATML; /* llama.cpp's default when a model has none */
        duet_err err = {0};
        if (duet_vocab_chat_template(v) && duet_chat_detect(duet_vocab_chat_template(v), &t, &err) < 0) t = DUET_CHAT_CHATML;
        if (duet_chat_apply(t, msgs, n, 1, &text, NULL, &err) < 0) rc = fail(e, 400, "messages", "%s", err.msg);
    }
    if (rc == 0) {
        int32_t *ids;
        const int flags = (duet_vocab_add_bos(c->models[0].vocab) ? DUET_TOK_ADD_BOS : 0) | DUET_TOK_PARSE_SPECIAL;
        int nt = tokenize(c, text, flags, &ids, e, "messages");
        rc = nt < 0 ? -1 : add_prompt(r, ids, nt, NULL, e);
    }
    free(text);
    for (int k = 0; owned && k < n; k++) free(owned[k]);
    free(owned), free(msgs);
    return rc;
}

/* cJSON ends a string at a NUL: a raw NUL byte (not valid JSON anyway) or a
 * \u0000 escape would silently cut the text the client sent. */
static long nul_at(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!s[i]) return (long)i;
        if (s[i] == '\\' && i + 1 < n) {
            if (s[i + 1] == 'u' && i + 6 <= n && !memcmp(s + i + 2, "0000", 4)) return (long)i;
            i++; /* the escaped character */
        }
    }
    return -1;
}

struct cJSON *srv_parse_json(const char *body, size_t len, srv_error *e) {
    memset(e, 0, sizeof *e);
    if (!srv_utf8_valid(body, len)) return fail(e, 400, "", "the request body is not valid UTF-8"), NULL;
    const long nul = nul_at(body, len);
    if (nul >= 0) return fail(e, 400, "", "the request body holds a NUL character (byte %ld)", nul), NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root) return fail(e, 400, "", "the request body is not valid JSON (error near byte %ld)",
                           cJSON_GetErrorPtr() ? (long)(cJSON_GetErrorPtr() - body) : 0L), NULL;
    while (end && end < body + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    if (end && end < body + len) {
        cJSON_Delete(root);
        return fail(e, 400, "", "the request body is not valid JSON (bytes after the value, at byte %ld)",
                    (long)(end - body)), NULL;
    }
    return root;
}

int srv_parse_request(const srv_config *c, int chat, const char *body, size_t len, srv_req *r, srv_error *e) {
    memset(r, 0, sizeof *r);
    memset(e, 0, sizeof *e);
    r->chat = chat;
    cJSON *root = srv_parse_json(body, len, e);
    if (!root) return -1;
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        fail(e, 400, "", "the request body must be a JSON object");
        goto done;
    }
    const cJSON *model = field(root, "model");
    if (model && !cJSON_IsString(model)) {
        fail(e, 400, "model", "'model' must be a string");
        goto done;
    }
    const char *name = model ? model->valuestring : c->profiles[c->default_profile].name;
    if ((r->prof_index = srv_profile_resolve(c, name, &r->prof)) < 0) {
        char list[1024];
        srv_profile_list(c, list, sizeof list);
        fail(e, 404, "model", "the model '%.64s' does not exist; this server offers: %s", name, list);
        goto done;
    }
    if ((chat ? parse_messages(c, root, r, e) : parse_prompt(c, root, r, e)) < 0) goto done;

    /* sampling: OpenAI's defaults (temperature 1, top_p 1), llama.cpp's extensions */
    double temp = 1, top_p = 1, min_p = 0, fpen = 0, ppen = 0;
    int top_k = 0;
    r->sp = duet_sampler_default_params();
    if (get_number(root, "temperature", 0, 2, &temp, e) || get_number(root, "top_p", 0, 1, &top_p, e) ||
        get_number(root, "min_p", 0, 1, &min_p, e) || get_int(root, "top_k", 0, 1 << 20, &top_k, e) ||
        get_number(root, "frequency_penalty", -2, 2, &fpen, e) || get_number(root, "presence_penalty", -2, 2, &ppen, e))
        goto done;
    if (top_p == 0) {
        fail(e, 400, "top_p", "'top_p' must be in (0, 1]");
        goto done;
    }
    r->sp.temp = (float)temp, r->sp.top_p = (float)top_p, r->sp.min_p = (float)min_p, r->sp.top_k = top_k;
    r->sp.freq_penalty = (float)fpen, r->sp.presence_penalty = (float)ppen, r->sp.repeat_penalty = 1;
    if ((fpen != 0 || ppen != 0) && r->prof.kind == SRV_SPEC) {
        fail(e, 400, fpen != 0 ? "frequency_penalty" : "presence_penalty",
             "penalties are not supported by the speculative profile '%s' (they make each position depend on "
             "unverified tokens); use a plain profile", r->prof.name);
        goto done;
    }
    const cJSON *seed = field(root, "seed");
    if (seed) {
        if (!cJSON_IsNumber(seed) || seed->valuedouble != floor(seed->valuedouble) || fabs(seed->valuedouble) > 9.007199254740992e15) {
            fail(e, 400, "seed", "'seed' must be an integer");
            goto done;
        }
        r->sp.seed = (uint64_t)(int64_t)seed->valuedouble;
        r->seed_given = 1;
    }

    /* output */
    const int ctx = srv_profile_ctx(c, &r->prof);
    int longest = 0;
    for (int i = 0; i < r->n_prompts; i++) longest = r->n_prompt[i] > longest ? r->n_prompt[i] : longest;
    if (longest >= ctx) {
        fail(e, 400, chat ? "messages" : "prompt", "the prompt has %d tokens but the context holds %d", longest, ctx);
        goto done;
    }
    r->max_tokens = chat ? ctx - longest : 16;
    if (get_int(root, "max_tokens", 0, 1 << 30, &r->max_tokens, e) ||
        get_int(root, "max_completion_tokens", 0, 1 << 30, &r->max_tokens, e))
        goto done;
    if (longest + r->max_tokens > ctx) {
        fail(e, 400, field(root, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens",
             "max_tokens %d plus the prompt's %d tokens exceed the context of %d", r->max_tokens, longest, ctx);
        goto done;
    }
    r->n = 1;
    if (get_int(root, "n", 1, SRV_MAX_CHOICES, &r->n, e)) goto done;
    if (r->n * r->n_prompts > SRV_MAX_CHOICES) {
        fail(e, 400, "n", "n x prompts = %d choices, at most %d", r->n * r->n_prompts, SRV_MAX_CHOICES);
        goto done;
    }
    if (get_bool(root, "stream", &r->stream, e) || get_bool(root, "ignore_eos", &r->ignore_eos, e) ||
        get_bool(root, "return_tokens_as_token_ids", &r->ids_as_tokens, e))
        goto done;
    const cJSON *so = field(root, "stream_options");
    if (so) {
        if (!cJSON_IsObject(so)) {
            fail(e, 400, "stream_options", "'stream_options' must be an object");
            goto done;
        }
        if (get_bool(so, "include_usage", &r->include_usage, e)) goto done;
    }
    const cJSON *stop = field(root, "stop");
    if (stop) {
        const cJSON *one = cJSON_IsString(stop) ? stop : NULL;
        if (!one && (!cJSON_IsArray(stop) || cJSON_GetArraySize(stop) > SRV_MAX_STOP)) {
            fail(e, 400, "stop", "'stop' must be a string or an array of at most %d strings", SRV_MAX_STOP);
            goto done;
        }
        for (const cJSON *s = one ? one : stop->child; s; s = one ? NULL : s->next) {
            if (!cJSON_IsString(s) || !s->valuestring[0] || strlen(s->valuestring) > 256) {
                fail(e, 400, "stop", "'stop' entries must be non-empty strings of at most 256 bytes");
                goto done;
            }
            r->stop[r->n_stop++] = strdup(s->valuestring);
        }
    }
    r->logprobs = -1;
    if (chat) {
        int lp = 0, top = 0;
        if (get_bool(root, "logprobs", &lp, e) || get_int(root, "top_logprobs", 0, SRV_MAX_TOP_LOGPROBS, &top, e)) goto done;
        if (field(root, "top_logprobs") && !lp) {
            fail(e, 400, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
            goto done;
        }
        r->logprobs = lp ? top : -1;
    } else {
        if (get_bool(root, "echo", &r->echo, e)) goto done;
        int lp = -1;
        if (get_int(root, "logprobs", 0, SRV_MAX_TOP_LOGPROBS, &lp, e)) goto done;
        r->logprobs = lp;
        /* duet's extension: with echo, the prompt's tokens from this index on
         * are scored as the server's streamed generation computes them (one
         * token at a time after a prompt of that length), not in one block */
        if (get_int(root, "duet_decode_from", 0, 1 << 30, &r->decode_from, e)) goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    if (rc < 0) srv_req_free(r);
    return rc;
}

/* A copy of s with every byte that does not start a valid UTF-8 character as
 * '?': messages quote the client's strings cut to a length ("%.64s"), and a
 * cut can fall inside a character; JSON must stay valid UTF-8. */
static void utf8_clean(char *dst, const char *s, size_t cap) {
    size_t n = strlen(s), o = 0;
    for (size_t i = 0; i < n && o + 1 < cap;) {
        size_t l = 1;
        while (l <= 4 && i + l <= n && !srv_utf8_valid(s + i, l)) l++;
        if (l > 4 || i + l > n) dst[o++] = '?', i++;
        else if (o + l < cap) memcpy(dst + o, s + i, l), o += l, i += l;
        else break;
    }
    dst[o] = 0;
}

char *srv_error_json(const srv_error *e) {
    char msg[sizeof e->message], param[sizeof e->param];
    utf8_clean(msg, e->message, sizeof msg);
    utf8_clean(param, e->param, sizeof param);
    cJSON *o = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(err, "message", msg);
    const char *type = e->status == 401 ? "authentication_error" : e->status == 404 ? "not_found_error"
                     : e->status == 503 ? "server_overloaded" : e->status >= 500 ? "server_error" : "invalid_request_error";
    cJSON_AddStringToObject(err, "type", type);
    if (param[0]) cJSON_AddStringToObject(err, "param", param);
    else cJSON_AddNullToObject(err, "param");
    cJSON_AddNumberToObject(err, "code", e->status);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* ---- responses -------------------------------------------------------------- */

/* A token's text as valid UTF-8 for JSON (its raw bytes may split a character). */
/* With ids_as_tokens (vLLM's return_tokens_as_token_ids) a token is
 * "token_id:N": what a client that maps tokens back to ids (duet's remote
 * model) needs, since different ids can render as the same text. */
static _Thread_local int ids_as_tokens; /* set per response by the thread building it */

static cJSON *piece_string(const srv_config *c, int32_t id) {
    char buf[256], out[3 * 256 + 1];
    if (ids_as_tokens) {
        snprintf(out, sizeof out, "token_id:%d", (int)id);
        return cJSON_CreateString(out);
    }
    int n = duet_token_to_piece(c->models[0].vocab, id, buf, sizeof buf, DUET_DETOK_SPECIAL);
    if (n < 0) n = 0;
    if (n > (int)sizeof buf) n = sizeof buf;
    size_t o = 0;
    for (int i = 0; i < n;) {
        int len = 1;
        while (len <= 4 && i + len <= n && !srv_utf8_valid(buf + i, (size_t)len)) len++;
        if (len <= 4 && i + len <= n) {
            memcpy(out + o, buf + i, (size_t)len), o += (size_t)len, i += len;
        } else { /* U+FFFD */
            memcpy(out + o, "\xEF\xBF\xBD", 3), o += 3, i++;
        }
    }
    out[o] = 0;
    return cJSON_CreateString(out);
}

static cJSON *lp_number(float x) { return isfinite(x) ? cJSON_CreateNumber(x) : cJSON_CreateNull(); }

/* completions' logprobs object for tokens [t0, t1) (and the prompt's when echoed) */
static cJSON *completion_logprobs(const srv_config *c, const srv_token *tk, int n, size_t text_base) {
    cJSON *o = cJSON_CreateObject();
    cJSON *toks = cJSON_AddArrayToObject(o, "tokens"), *lps = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(o, "top_logprobs"), *offs = cJSON_AddArrayToObject(o, "text_offset");
    for (int i = 0; i < n; i++) {
        cJSON_AddItemToArray(toks, piece_string(c, tk[i].id));
        cJSON_AddItemToArray(lps, lp_number(tk[i].logprob));
        if (tk[i].n_top) {
            cJSON *t = cJSON_CreateObject();
            for (int k = 0; k < tk[i].n_top; k++) {
                cJSON *key = piece_string(c, tk[i].top_id[k]);
                if (!cJSON_GetObjectItemCaseSensitive(t, key->valuestring))
                    cJSON_AddItemToObject(t, key->valuestring, lp_number(tk[i].top_lp[k]));
                cJSON_Delete(key);
            }
            cJSON_AddItemToArray(tops, t);
        } else {
            cJSON_AddItemToArray(tops, cJSON_CreateNull());
        }
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(text_base + tk[i].text_off)));
    }
    return o;
}

static cJSON *chat_logprobs(const srv_config *c, const srv_token *tk, int n) {
    cJSON *o = cJSON_CreateObject(), *content = cJSON_AddArrayToObject(o, "content");
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON *s = piece_string(c, tk[i].id);
        cJSON_AddItemToObject(e, "token", s);
        cJSON_AddItemToObject(e, "logprob", lp_number(tk[i].logprob));
        cJSON *bytes = cJSON_AddArrayToObject(e, "bytes");
        for (const unsigned char *b = (const unsigned char *)s->valuestring; *b; b++)
            cJSON_AddItemToArray(bytes, cJSON_CreateNumber(*b));
        cJSON *top = cJSON_AddArrayToObject(e, "top_logprobs");
        for (int k = 0; k < tk[i].n_top; k++) {
            cJSON *t = cJSON_CreateObject();
            cJSON_AddItemToObject(t, "token", piece_string(c, tk[i].top_id[k]));
            cJSON_AddItemToObject(t, "logprob", lp_number(tk[i].top_lp[k]));
            cJSON_AddItemToArray(top, t);
        }
        cJSON_AddItemToArray(content, e);
    }
    return o;
}

/* The accounting object: who did the work, what it cost. */
static cJSON *accounting(const srv_config *c, const srv_req *r, srv_job *const *jobs, int n_jobs) {
    duet_stats sum = {0};
    double queue = 0, ttft = 0, total = 0;
    int timed_out = 0;
    for (int i = 0; i < n_jobs; i++) {
        const duet_stats *s = &jobs[i]->stats;
        sum.n_prompt += s->n_prompt, sum.n_generated += jobs[i]->n_tok;
        for (int k = 0; k < DUET_ORIGIN_COUNT; k++) sum.by_origin[k] += s->by_origin[k];
        sum.drafted += s->drafted, sum.accepted += s->accepted, sum.rounds += s->rounds;
        sum.target_tokens += s->target_tokens, sum.draft_tokens += s->draft_tokens;
        sum.target_evals += s->target_evals, sum.draft_evals += s->draft_evals;
        sum.t_prefill += s->t_prefill, sum.t_target += s->t_target, sum.t_draft += s->t_draft;
        const srv_job *j = jobs[i];
        queue = fmax(queue, (j->t_start > 0 ? j->t_start : j->t_end) - j->t_queued);
        if (j->t_first > 0) ttft = fmax(ttft, j->t_first - j->t_queued);
        total = fmax(total, j->t_end - j->t_queued);
        timed_out |= strstr(j->error, "time limit") != NULL;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "profile", r->prof.name);
    srv_pipeline_json(o, r, jobs, n_jobs);
    static const char *kinds[] = {"plain", "speculative", "route", "cascade", "defer", "fusion"};
    cJSON_AddStringToObject(o, "strategy", kinds[r->prof.kind]);
    cJSON *par = cJSON_AddObjectToObject(o, "params");
    const int n_small = r->prof.kind == SRV_FUSE && r->prof.tuned >= 0 ? 2 : 1; /* models sharing the draft counts */
    if (r->prof.kind == SRV_FUSE) { /* the rule, its parameters and its models */
        static const char *rules[] = {"mix", "poe", "cd", "proxy"};
        const duet_fuse_params *fp = &r->prof.fuse;
        cJSON_AddStringToObject(o, "rule", rules[fp->rule]);
        cJSON_AddStringToObject(par, "rule", rules[fp->rule]);
        cJSON_AddStringToObject(par, "llm", c->models[r->prof.model].name);
        cJSON_AddStringToObject(par, "slm", c->models[r->prof.draft].name);
        if (r->prof.tuned >= 0) cJSON_AddStringToObject(par, "slm_tuned", c->models[r->prof.tuned].name);
        if (fp->rule == DUET_FUSE_MIX || fp->rule == DUET_FUSE_POE)
            cJSON_AddNumberToObject(par, "weight", round(fp->weight * 1e6) / 1e6);
        if (fp->rule == DUET_FUSE_CD) {
            cJSON_AddNumberToObject(par, "alpha", round(fp->alpha * 1e6) / 1e6);
            cJSON_AddNumberToObject(par, "beta", round(fp->beta * 1e6) / 1e6);
        }
    } else if (r->prof.kind >= SRV_ROUTE) {
        cJSON_AddStringToObject(par, "llm", c->models[r->prof.model].name);
        cJSON_AddStringToObject(par, "slm", c->models[r->prof.draft].name);
        cJSON_AddNumberToObject(par, r->prof.kind == SRV_ROUTE ? "llm_share" : r->prof.kind == SRV_CASCADE ? "threshold" : "eta",
                                r->prof.param);
        /* the decision and what it rested on, per choice */
        cJSON *dec = cJSON_AddArrayToObject(o, "decisions");
        for (int i = 0; i < n_jobs; i++) {
            const duet_stats *s = &jobs[i]->stats;
            cJSON *d = cJSON_CreateObject();
            if (r->prof.kind == SRV_DEFER) {
                cJSON_AddNumberToObject(d, "deferred_tokens", s->deferred);
            } else {
                cJSON_AddStringToObject(d, "answered_by", s->escalated ? "llm" : "slm");
                cJSON_AddNumberToObject(d, r->prof.kind == SRV_ROUTE ? "router_score" : "slm_confidence", s->confidence);
            }
            if (r->prof.kind == SRV_ROUTE) {
                cJSON *sg = cJSON_AddObjectToObject(d, "signals");
                for (int k = 0; k < DUET_ROUTE_NSIG; k++) cJSON_AddNumberToObject(sg, duet_signal_name(k), s->signals[k]);
            }
            cJSON_AddItemToArray(dec, d);
        }
    } else if (r->prof.kind == SRV_SPEC) {
        cJSON_AddStringToObject(par, "target", c->models[r->prof.model].name);
        if (r->prof.draft >= 0) cJSON_AddStringToObject(par, "draft", c->models[r->prof.draft].name);
        cJSON_AddBoolToObject(par, "ngram", r->prof.spec.use_ngram);
        cJSON_AddNumberToObject(par, "draft_max", r->prof.spec.draft_max);
        cJSON_AddBoolToObject(par, "adaptive", r->prof.spec.adaptive);
    } else {
        cJSON_AddStringToObject(par, "model", c->models[r->prof.model].name);
    }
    cJSON *tok = cJSON_AddObjectToObject(o, "tokens");
    cJSON *tm = cJSON_AddObjectToObject(tok, c->models[r->prof.model].name);
    cJSON_AddNumberToObject(tm, "evaluated", (double)sum.target_tokens);
    cJSON_AddNumberToObject(tm, "passes", sum.target_evals);
    cJSON_AddNumberToObject(tm, "seconds",
                            sum.t_target + (r->prof.kind >= SRV_ROUTE && r->prof.kind != SRV_FUSE ? 0 : sum.t_prefill));
    /* proxy-tuning's two SLMs evaluate the same tokens; their time is measured together and shared */
    for (int i = 0; i < n_small; i++) {
        const int mi = i ? r->prof.tuned : r->prof.draft;
        if (mi < 0) continue;
        cJSON *dm = cJSON_AddObjectToObject(tok, c->models[mi].name);
        cJSON_AddNumberToObject(dm, "evaluated", (double)(sum.draft_tokens / n_small));
        cJSON_AddNumberToObject(dm, "passes", sum.draft_evals / n_small);
        cJSON_AddNumberToObject(dm, "seconds", sum.t_draft / n_small);
    }
    cJSON *by = cJSON_AddObjectToObject(o, "tokens_by_origin");
    for (int k = 0; k < DUET_ORIGIN_COUNT; k++) cJSON_AddNumberToObject(by, duet_origin_name(k), sum.by_origin[k]);
    /* a remote model failed and its local fallback finished the answer */
    int degraded = 0;
    for (int i = 0; i < n_jobs; i++) degraded |= jobs[i]->stats.degraded;
    if (c->models[r->prof.model].remote_url[0]) cJSON_AddBoolToObject(o, "degraded", degraded);
    cJSON_AddNumberToObject(o, "drafted", sum.drafted);
    cJSON_AddNumberToObject(o, "accepted", sum.accepted);
    cJSON_AddNumberToObject(o, "acceptance_rate", sum.drafted ? (double)sum.accepted / sum.drafted : 0);
    cJSON_AddNumberToObject(o, "rounds", sum.rounds);
    cJSON *t = cJSON_AddObjectToObject(o, "timings");
    cJSON_AddNumberToObject(t, "queue_s", queue);
    cJSON_AddNumberToObject(t, "prefill_s", sum.t_prefill);
    cJSON_AddNumberToObject(t, "time_to_first_token_s", ttft);
    cJSON_AddNumberToObject(t, "total_s", total);
    cJSON_AddNumberToObject(t, "tokens_per_s", total > 0 ? sum.n_generated / total : 0);
    if (timed_out) cJSON_AddBoolToObject(o, "timed_out", 1);
    return o;
}

static cJSON *usage(srv_job *const *jobs, int n_jobs, const srv_req *r) {
    long pt = 0, ct = 0;
    for (int i = 0; i < n_jobs; i++) ct += jobs[i]->n_tok;
    for (int i = 0; i < r->n_prompts; i++) pt += r->n_prompt[i];
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)pt);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)ct);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(pt + ct));
    return u;
}

static cJSON *envelope(const srv_req *r, const char *id, long created, int chunk) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", r->chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "model", r->prof.name);
    return o;
}

/* The prompt text for echo: as sent, or the detokenized ids. */
static char *echo_text(const srv_config *c, const srv_req *r, int p) {
    if (r->prompt_text[p]) return strdup(r->prompt_text[p]);
    int64_t n = duet_detokenize(c->models[0].vocab, r->prompt[p], r->n_prompt[p], NULL, 0, 0);
    char *s = malloc((size_t)(n > 0 ? n : 0) + 1);
    if (s) duet_detokenize(c->models[0].vocab, r->prompt[p], r->n_prompt[p], s, (size_t)(n > 0 ? n : 0) + 1, 0);
    if (s && !srv_utf8_valid(s, strlen(s))) s[0] = 0;
    return s;
}

char *srv_response_json(const srv_config *c, const srv_req *r, srv_job *const *jobs, int n_jobs, const char *id,
                        long created) {
    ids_as_tokens = r->ids_as_tokens;
    cJSON *o = envelope(r, id, created, 0);
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    for (int i = 0; i < n_jobs; i++) {
        srv_job *j = jobs[i];
        const int p = i / r->n;
        /* pipeline redact: the answer with the request's placeholders put back (the tokens' own texts in
           logprobs stay as the model wrote them) */
        char *restored = NULL;
        const char *text = j->text ? j->text : "";
        size_t text_len = j->text ? j->text_len : 0;
        if (r->redactor) {
            duet_err err = {0};
            const int nr = duet_restore(r->redactor, text, text_len, &restored, &err);
            if (nr >= 0) text = restored, text_len = strlen(restored), j->n_restored = nr;
        }
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", i);
        char *echo = r->echo ? echo_text(c, r, p) : NULL;
        const size_t base = echo ? strlen(echo) : 0;
        if (r->chat) {
            cJSON *msg = cJSON_AddObjectToObject(ch, "message");
            cJSON_AddStringToObject(msg, "role", "assistant");
            cJSON_AddStringToObject(msg, "content", text);
            cJSON_AddItemToObject(ch, "logprobs", r->logprobs >= 0 ? chat_logprobs(c, j->tok, j->n_tok) : cJSON_CreateNull());
        } else {
            size_t n = base + text_len;
            char *full = malloc(n + 1);
            if (full) {
                if (base) memcpy(full, echo, base);
                if (text_len) memcpy(full + base, text, text_len);
                full[n] = 0;
            }
            cJSON_AddStringToObject(ch, "text", full ? full : "");
            free(full);
            if (r->logprobs >= 0) {
                cJSON *lp = completion_logprobs(c, j->tok, j->n_tok, base);
                if (r->echo && j->prompt_tok) { /* the prompt's tokens first */
                    cJSON *pl = completion_logprobs(c, j->prompt_tok, j->n_prompt, 0);
                    const char *keys[4] = {"tokens", "token_logprobs", "top_logprobs", "text_offset"};
                    for (int k = 0; k < 4; k++) {
                        cJSON *dst = cJSON_GetObjectItemCaseSensitive(pl, keys[k]);
                        cJSON *src = cJSON_DetachItemFromObjectCaseSensitive(lp, keys[k]);
                        cJSON *it = src->child;
                        while (it) {
                            cJSON *next = it->next;
                            cJSON_AddItemToArray(dst, cJSON_DetachItemViaPointer(src, it));
                            it = next;
                        }
                        cJSON_Delete(src);
                    }
                    /* prompt offsets: the echoed text is the prompt text; offsets by token pieces */
                    cJSON *offs = cJSON_GetObjectItemCaseSensitive(pl, "text_offset");
                    size_t off = 0;
                    cJSON *it = offs->child;
                    for (int k = 0; k < j->n_prompt && it; k++, it = it->next) {
                        cJSON_SetNumberValue(it, (double)off);
                        off += (size_t)duet_token_to_piece(c->models[0].vocab, j->prompt[k], NULL, 0, 0);
                    }
                    cJSON_Delete(lp);
                    lp = pl;
                }
                cJSON_AddItemToObject(ch, "logprobs", lp);
            } else {
                cJSON_AddNullToObject(ch, "logprobs");
            }
        }
        free(echo), free(restored);
        cJSON_AddStringToObject(ch, "finish_reason", j->finish ? j->finish : "stop");
        cJSON_AddItemToArray(choices, ch);
    }
    cJSON_AddItemToObject(o, "usage", usage(jobs, n_jobs, r));
    cJSON_AddItemToObject(o, "duet", accounting(c, r, jobs, n_jobs));
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* ---- streaming ----------------------------------------------------------------- */

static void append(char **out, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t nc = (*len + n + 1) * 2;
        char *t = realloc(*out, nc);
        if (!t) return;
        *out = t, *cap = nc;
    }
    memcpy(*out + *len, s, n);
    *len += n;
    (*out)[*len] = 0;
}

static void emit_event(cJSON *o, char **out, size_t *len, size_t *cap) {
    char *s = cJSON_PrintUnformatted(o);
    if (s) {
        append(out, len, cap, "data: ", 6);
        append(out, len, cap, s, strlen(s));
        append(out, len, cap, "\n\n", 2);
        free(s);
    }
    cJSON_Delete(o);
}

/* pipeline redact: delta (n bytes, malloc'd, consumed) with the placeholders put back as the text
 * streams: a placeholder's beginning is held until it is whole (then its value goes out) or proven
 * not to be one; the last delta flushes what is held. The result is malloc'd (NULL: out of memory). */
static char *restore_delta(const srv_req *r, srv_job *j, srv_stream_pos *pos, char *delta, size_t n, int last) {
    if (!pos->restore && !(pos->restore = duet_restore_stream_new(r->redactor))) return free(delta), NULL;
    size_t a = 0, b = 0;
    const char *o = duet_restore_stream_push(pos->restore, delta, n, &a);
    char *out = o ? malloc(a + 1) : NULL;
    if (out) memcpy(out, o, a);
    free(delta);
    if (out && last) { /* the push's bytes are copied: flush reuses the stream's buffer */
        const char *f = duet_restore_stream_flush(pos->restore, &b);
        char *t = f ? realloc(out, a + b + 1) : NULL;
        if (t) memcpy(t + a, f, b), out = t;
        else free(out), out = NULL, a = b = 0;
    }
    if (out) out[a + b] = 0;
    j->n_restored = duet_restore_stream_count(pos->restore);
    return out;
}

int srv_stream_events(const srv_config *c, const srv_req *r, srv_job *j, int index, srv_stream_pos *pos,
                      const char *id, long created, char **out, size_t *len, size_t *cap) {
    int added = 0;
    ids_as_tokens = r->ids_as_tokens;
    if (r->echo && !pos->echo_sent && (j->started || j->done)) { /* the prompt first */
        char *echo = echo_text(c, r, index / r->n);
        cJSON *o = envelope(r, id, created, 1);
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", index);
        cJSON_AddStringToObject(ch, "text", echo ? echo : "");
        cJSON_AddNullToObject(ch, "logprobs");
        cJSON_AddNullToObject(ch, "finish_reason");
        cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), ch);
        emit_event(o, out, len, cap);
        free(echo);
        pos->echo_sent = 1, added = 1;
    }
    /* tokens whose text no stop string can take back any more (all of them once done) */
    int t1 = pos->tok_sent;
    while (t1 < j->n_tok && (j->done || j->tok[t1].text_off + j->tok[t1].text_len <= j->text_safe)) t1++;
    size_t end = t1 > pos->tok_sent ? j->tok[t1 - 1].text_off + j->tok[t1 - 1].text_len : pos->text_sent;
    if (j->done) end = j->text_len;
    if (end > j->text_len) end = j->text_len;
    const int has_final = j->done && !pos->final_sent;
    if (t1 > pos->tok_sent || end > pos->text_sent || (r->chat && !pos->role_sent) || has_final) {
        cJSON *o = envelope(r, id, created, 1);
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", index);
        const size_t from = pos->text_sent < end ? pos->text_sent : end;
        char *delta = malloc(end - from + 1);
        if (delta) memcpy(delta, j->text ? j->text + from : "", end - from), delta[end - from] = 0;
        if (delta && r->redactor) delta = restore_delta(r, j, pos, delta, end - from, has_final);
        if (r->chat) {
            cJSON *d = cJSON_AddObjectToObject(ch, "delta");
            if (!pos->role_sent) cJSON_AddStringToObject(d, "role", "assistant");
            if (end > from || !has_final) cJSON_AddStringToObject(d, "content", delta ? delta : "");
            cJSON_AddItemToObject(ch, "logprobs", r->logprobs >= 0 ? chat_logprobs(c, j->tok + pos->tok_sent, t1 - pos->tok_sent)
                                                                   : cJSON_CreateNull());
        } else {
            cJSON_AddStringToObject(ch, "text", delta ? delta : "");
            cJSON_AddItemToObject(ch, "logprobs", r->logprobs >= 0 ? completion_logprobs(c, j->tok + pos->tok_sent, t1 - pos->tok_sent, 0)
                                                                   : cJSON_CreateNull());
        }
        free(delta);
        if (has_final) cJSON_AddStringToObject(ch, "finish_reason", j->finish ? j->finish : "stop");
        else cJSON_AddNullToObject(ch, "finish_reason");
        cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), ch);
        /* per-token provenance: which model produced each token of this chunk */
        cJSON *du = cJSON_AddObjectToObject(o, "duet");
        cJSON *toks = cJSON_AddArrayToObject(du, "tokens");
        for (int t = pos->tok_sent; t < t1; t++) {
            const srv_token *tk = &j->tok[t];
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "id", tk->id);
            size_t a = tk->text_off, b = tk->text_off + tk->text_len;
            if (b > end) b = end;
            if (a > b) a = b;
            char *s = malloc(b - a + 1);
            if (s) memcpy(s, j->text ? j->text + a : "", b - a), s[b - a] = 0;
            cJSON_AddStringToObject(e, "text", s && srv_utf8_valid(s, b - a) ? s : "");
            free(s);
            cJSON_AddStringToObject(e, "by", duet_origin_name(tk->origin));
            if (isfinite(tk->logprob)) cJSON_AddNumberToObject(e, "logprob", tk->logprob);
            cJSON_AddItemToArray(toks, e);
        }
        if (has_final) { /* the accounting travels in the last chunk of the choice */
            srv_job *one[1] = {j};
            cJSON_AddItemToObject(du, "accounting", accounting(c, r, one, 1));
            if (j->error[0]) cJSON_AddStringToObject(du, "error", j->error);
        }
        emit_event(o, out, len, cap);
        pos->tok_sent = t1, pos->text_sent = end, pos->role_sent = 1, added = 1;
        if (has_final) pos->final_sent = 1;
    }
    return added;
}

void srv_stream_close(const srv_config *c, const srv_req *r, srv_job *const *jobs, int n_jobs, const char *id,
                      long created, char **out, size_t *len, size_t *cap) {
    if (r->include_usage) {
        cJSON *o = envelope(r, id, created, 1);
        cJSON_AddArrayToObject(o, "choices");
        cJSON_AddItemToObject(o, "usage", usage(jobs, n_jobs, r));
        cJSON_AddItemToObject(o, "duet", accounting(c, r, jobs, n_jobs));
        emit_event(o, out, len, cap);
    }
    append(out, len, cap, "data: [DONE]\n\n", 14);
}
