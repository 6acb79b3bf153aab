/* Chat templates: detection by distinctive substrings of a Jinja template
 * (after llama.cpp's llm_chat_detect_template) and rendering in C of the
 * formats the model families document. BOS is never part of the text (the
 * tokenizer adds it); later turns that the official templates open with BOS
 * (llama2) carry its text, to be parsed with DUET_TOK_PARSE_SPECIAL. */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

static const char *const names[DUET_CHAT_COUNT] = {
    NULL, "chatml", "llama2", "llama3", "mistral", "zephyr", "phi3", "gemma",
};

const char *duet_chat_template_name(duet_chat_template t) {
    return t > DUET_CHAT_UNKNOWN && t < DUET_CHAT_COUNT ? names[t] : NULL;
}

const char *duet_chat_template_names(void) { return "chatml, llama2, llama3, mistral, zephyr, phi3, gemma"; }

int duet_chat_detect(const char *s, duet_chat_template *out, duet_err *err) {
    if (!s || !out) return duet_err_set(err, DUET_EINVAL, "duet_chat_detect: NULL argument");
    *out = DUET_CHAT_UNKNOWN;
    for (int t = 1; t < DUET_CHAT_COUNT; t++)
        if (!strcmp(s, names[t])) *out = (duet_chat_template)t;
#define HAS(x) (strstr(s, x) != NULL)
    if (*out) {
    } else if (HAS("<|im_start|>")) {
        *out = DUET_CHAT_CHATML;
    } else if (HAS("[INST]")) {
        *out = HAS("<<SYS>>") ? DUET_CHAT_LLAMA2 : DUET_CHAT_MISTRAL;
    } else if (HAS("<|assistant|>") && HAS("<|end|>")) {
        *out = DUET_CHAT_PHI3;
    } else if (HAS("<|user|>") && HAS("<|assistant|>")) {
        *out = DUET_CHAT_ZEPHYR;
    } else if (HAS("<start_of_turn>")) {
        *out = DUET_CHAT_GEMMA;
    } else if (HAS("<|start_header_id|>") && HAS("<|end_header_id|>")) {
        *out = DUET_CHAT_LLAMA3;
    }
#undef HAS
    if (*out) return 0;
    return duet_err_set(err, DUET_ENOTFOUND, "unrecognised chat template; name one of: %s", duet_chat_template_names());
}

/* ---- a growable string ---- */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void put_n(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n + 1) c *= 2;
        char *q = realloc(b->p, c);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void put(sbuf *b, const char *s) { put_n(b, s, strlen(s)); }

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* s with leading and trailing ASCII white space removed (Jinja's trim / Python's strip). */
static void put_trimmed(sbuf *b, const char *s) {
    size_t n = strlen(s);
    while (n && is_space(*s)) s++, n--;
    while (n && is_space(s[n - 1])) n--;
    put_n(b, s, n);
}

static int role_is(const duet_chat_msg *m, const char *r) { return !strcmp(m->role, r); }

/* <|im_start|>role\ncontent<|im_end|>\n */
static void render_chatml(sbuf *b, const duet_chat_msg *m, int n, int gen) {
    for (int i = 0; i < n; i++) {
        put(b, "<|im_start|>");
        put(b, m[i].role);
        put(b, "\n");
        put(b, m[i].content);
        put(b, "<|im_end|>\n");
    }
    if (gen) put(b, "<|im_start|>assistant\n");
}

/* Meta's Llama 2 chat template: <s>[INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST] answer </s><s>[INST] ...
 * (the first <s> is the tokenizer's BOS); contents are stripped. */
static void render_llama2(sbuf *b, const duet_chat_msg *m, int n) {
    const char *sys = NULL;
    int turns = 0;
    for (int i = 0; i < n; i++) {
        if (role_is(&m[i], "system")) {
            sys = m[i].content;
            continue;
        }
        if (role_is(&m[i], "assistant")) {
            put(b, " ");
            put_trimmed(b, m[i].content);
            put(b, " </s>");
            continue;
        }
        put(b, turns++ ? "<s>[INST] " : "[INST] ");
        if (sys) {
            sbuf c = {0};
            put(&c, "<<SYS>>\n");
            put(&c, sys);
            put(&c, "\n<</SYS>>\n\n");
            put(&c, m[i].content);
            put_trimmed(b, c.p ? c.p : "");
            b->oom |= c.oom;
            free(c.p);
            sys = NULL;
        } else {
            put_trimmed(b, m[i].content);
        }
        put(b, " [/INST]");
    }
    if (sys) { /* a system message with no user turn after it */
        put(b, turns ? "<s>[INST] <<SYS>>\n" : "[INST] <<SYS>>\n");
        put(b, sys);
        put(b, "\n<</SYS>>\n\n [/INST]");
    }
}

/* <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> (content trimmed) */
static void render_llama3(sbuf *b, const duet_chat_msg *m, int n, int gen) {
    for (int i = 0; i < n; i++) {
        put(b, "<|start_header_id|>");
        put(b, m[i].role);
        put(b, "<|end_header_id|>\n\n");
        put_trimmed(b, m[i].content);
        put(b, "<|eot_id|>");
    }
    if (gen) put(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* Mistral 7B Instruct v0.1/v0.2: <s>[INST] user [/INST]answer</s>[INST] ... ;
 * a system message is put in front of the next user message, then "\n\n". */
static void render_mistral(sbuf *b, const duet_chat_msg *m, int n) {
    const char *sys = NULL;
    for (int i = 0; i < n; i++) {
        if (role_is(&m[i], "system")) {
            sys = m[i].content;
        } else if (role_is(&m[i], "assistant")) {
            put(b, m[i].content);
            put(b, "</s>");
        } else {
            put(b, "[INST] ");
            if (sys) {
                put(b, sys);
                put(b, "\n\n");
                sys = NULL;
            }
            put(b, m[i].content);
            put(b, " [/INST]");
        }
    }
    if (sys) {
        put(b, "[INST] ");
        put(b, sys);
        put(b, "\n\n [/INST]");
    }
}

/* <|role|>\ncontent END\n with END = </s> (zephyr) or <|end|> (phi3) */
static void render_tagged(sbuf *b, const duet_chat_msg *m, int n, int gen, const char *end) {
    for (int i = 0; i < n; i++) {
        put(b, "<|");
        put(b, m[i].role);
        put(b, "|>\n");
        put(b, m[i].content);
        put(b, end);
        put(b, "\n");
    }
    if (gen) put(b, "<|assistant|>\n");
}

/* <start_of_turn>user\ncontent<end_of_turn>\n, assistant -> model, contents
 * trimmed; a system message goes in front of the next user turn + "\n\n". */
static void render_gemma(sbuf *b, const duet_chat_msg *m, int n, int gen) {
    const char *sys = NULL;
    for (int i = 0; i < n; i++) {
        if (role_is(&m[i], "system")) {
            sys = m[i].content;
            continue;
        }
        int model = role_is(&m[i], "assistant");
        put(b, "<start_of_turn>");
        put(b, model ? "model" : m[i].role);
        put(b, "\n");
        if (sys && !model) {
            put(b, sys);
            put(b, "\n\n");
            sys = NULL;
        }
        put_trimmed(b, m[i].content);
        put(b, "<end_of_turn>\n");
    }
    if (sys) {
        put(b, "<start_of_turn>user\n");
        put(b, sys);
        put(b, "\n\n<end_of_turn>\n");
    }
    if (gen) put(b, "<start_of_turn>model\n");
}

int duet_chat_apply(duet_chat_template t, const duet_chat_msg *msgs, int n, int gen, char **out, size_t *len,
                    duet_err *err) {
    if (!out || n < 0 || (n > 0 && !msgs)) return duet_err_set(err, DUET_EINVAL, "duet_chat_apply: bad arguments");
    *out = NULL;
    for (int i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return duet_err_set(err, DUET_EINVAL, "chat message %d has no %s", i, msgs[i].role ? "content" : "role");
    sbuf b = {0};
    put(&b, ""); /* an empty chat still gives a string */
    switch (t) {
    case DUET_CHAT_CHATML: render_chatml(&b, msgs, n, gen); break;
    case DUET_CHAT_LLAMA2: render_llama2(&b, msgs, n); break;
    case DUET_CHAT_LLAMA3: render_llama3(&b, msgs, n, gen); break;
    case DUET_CHAT_MISTRAL: render_mistral(&b, msgs, n); break;
    case DUET_CHAT_ZEPHYR: render_tagged(&b, msgs, n, gen, "</s>"); break;
    case DUET_CHAT_PHI3: render_tagged(&b, msgs, n, gen, "<|end|>"); break;
    case DUET_CHAT_GEMMA: render_gemma(&b, msgs, n, gen); break;
    default:
        free(b.p);
        return duet_err_set(err, DUET_EINVAL, "unknown chat template %d; name one of: %s", (int)t,
                            duet_chat_template_names());
    }
    if (b.oom) {
        free(b.p);
        return duet_err_set(err, DUET_ENOMEM, "out of memory");
    }
    *out = b.p;
    if (len) *len = b.n;
    return 0;
}
