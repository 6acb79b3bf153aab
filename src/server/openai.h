/* internal: not part of the public API; may change.
 *
 * The OpenAI request and response shapes: parsing and validating a
 * completion or chat request (every error names its field), and building the
 * JSON of responses, stream chunks and errors. */
#ifndef DUET_SERVER_OPENAI_H
#define DUET_SERVER_OPENAI_H

#include <stddef.h>

#include "duet/redact.h"
#include "server/server.h"

typedef struct srv_req {
    int chat;                       /* /v1/chat/completions */
    int prof_index;
    srv_profile prof;
    int n_prompts;                  /* prompts (completions: a string array gives several) */
    int32_t *prompt[SRV_MAX_CHOICES];
    int n_prompt[SRV_MAX_CHOICES];
    char *prompt_text[SRV_MAX_CHOICES]; /* for echo */
    int n;                          /* choices per prompt */
    int max_tokens;
    duet_sampler_params sp;
    int seed_given;
    char *stop[SRV_MAX_STOP];
    int n_stop;
    int stream, include_usage, echo, ignore_eos;
    int ids_as_tokens;              /* return_tokens_as_token_ids (vLLM's): logprob tokens as "token_id:N" */
    int logprobs;                   /* -1: none; else top alternatives per token (0..20) */
    int decode_from;                /* duet_decode_from: echo scores positions >= this in the decode arithmetic (0: none) */
    /* the profile's pipeline (server/pipeline.h): this request's redactor, the compress model's sequence */
    duet_redactor *redactor;
    duet_lm *compress_lm;
    int n_redacted;                 /* redact: values replaced in the request's texts */
    int n_tokens_in, n_tokens_kept; /* compress: the texts' tokens before and after */
} srv_req;

/* An error for the client: HTTP status, message, and the field at fault ("" if none). */
typedef struct srv_error {
    int status;
    char message[512];
    char param[64];
} srv_error;

/* 0, or -1 with e filled (400 bad field, 404 unknown model, ...). */
int srv_parse_request(const srv_config *c, int chat, const char *body, size_t len, srv_req *r, srv_error *e);
void srv_req_free(srv_req *r);
/* The context a profile's requests get (slots' sequences of its model). */
int srv_profile_ctx(const srv_config *c, const srv_profile *p);

/* 1 if s[0..n) is valid UTF-8. */
int srv_utf8_valid(const char *s, size_t n);
/* A request body as one JSON value (cJSON_Delete it), or NULL with e filled (400):
 * not valid UTF-8, a NUL (raw or \u0000: cJSON would cut its string there), not
 * JSON, or bytes after the value. */
struct cJSON *srv_parse_json(const char *body, size_t len, srv_error *e);

/* {"error": {"message", "type", "param", "code"}} (malloc'd). */
char *srv_error_json(const srv_error *e);

/* Whole response of a finished request (malloc'd). jobs: (n_jobs) in choice order. */
char *srv_response_json(const srv_config *c, const srv_req *r, srv_job *const *jobs, int n_jobs, const char *id,
                        long created);

/* Streaming: the state of one choice, and the next chunk(s) it can send. */
typedef struct srv_stream_pos {
    int tok_sent;      /* tokens already sent */
    size_t text_sent;  /* bytes of text already sent */
    int role_sent;     /* chat: the first delta carries the role */
    int echo_sent;
    int final_sent;    /* the chunk with finish_reason */
    duet_restore_stream *restore; /* pipeline redact: the placeholders put back as the text streams (owned) */
} srv_stream_pos;

/* Appends to *out (realloc'd; *len, *cap) the SSE events job j (choice
 * `index`) can send now; returns 1 if anything was added. Caller holds j->mu. */
int srv_stream_events(const srv_config *c, const srv_req *r, srv_job *j, int index, srv_stream_pos *pos,
                      const char *id, long created, char **out, size_t *len, size_t *cap);
/* The closing events: usage (if asked) with the accounting, then [DONE]. */
void srv_stream_close(const srv_config *c, const srv_req *r, srv_job *const *jobs, int n_jobs, const char *id,
                      long created, char **out, size_t *len, size_t *cap);

#endif
