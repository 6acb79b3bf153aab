/* internal: not part of the public API; may change.
 *
 * A profile's privacy pipeline (issue 14, as duet generate --pipeline does
 * it): "pipeline": ["redact", "compress"] in a profile of the config. The
 * request's text is redacted on this server (PII -> <EMAIL_1>-style
 * placeholders, numbered per request: one redactor per request) and
 * optionally compressed by a local model (placeholders kept whole) before it
 * is tokenized, so no model (a remote one above all) sees a planted value;
 * the answer is restored before it reaches the client, whole or as it
 * streams. */
#ifndef DUET_SERVER_PIPELINE_H
#define DUET_SERVER_PIPELINE_H

#include <cjson/cJSON.h>

#include "server/openai.h"

/* Reads "pipeline", "pii_names", "compress_ratio" and "compress_model" of
 * profile object o into p (after the rest of the profile); every error
 * names its field (where: "profiles[3]."). */
int srv_pipeline_load(srv_config *c, srv_profile *p, const cJSON *o, const char *where, duet_err *err);

/* 1 if the request's profile runs a pipeline. */
int srv_pipeline_on(const srv_req *r);

/* text through the profile's stages for request r (the redactor is made on
 * first use and kept in r, so one value gets one placeholder across the
 * request's prompts and messages): *out malloc'd. 0, or -1 with e filled
 * (param names the request's field). */
int srv_pipeline_text(const srv_config *c, srv_req *r, const char *text, char **out, const char *param,
                      srv_error *e);

/* The "pipeline" object of the accounting: stages, redacted (by kind),
 * restored (the jobs' n_restored), compress's token counts. */
void srv_pipeline_json(cJSON *acc, const srv_req *r, srv_job *const *jobs, int n_jobs);

/* What srv_pipeline_text left in r. */
void srv_pipeline_free(srv_req *r);

#endif
