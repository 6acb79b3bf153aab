/* A profile's privacy pipeline: the config fields, the stages on a request's
 * text, and their figures (server/pipeline.h). The text stages are the
 * library's (redact.h, compress.h duet_compress_text_keep), the same that
 * duet generate --pipeline runs. */
#include "server/pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/compress.h"
#include "duet/lm_local.h"

int srv_pipeline_load(srv_config *c, srv_profile *p, const cJSON *o, const char *where, duet_err *err) {
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "pipeline");
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(o, "pii_names");
    const cJSON *ratio = cJSON_GetObjectItemCaseSensitive(o, "compress_ratio");
    const cJSON *cm = cJSON_GetObjectItemCaseSensitive(o, "compress_model");
    p->compress_ratio = 0.5;
    if (!st) {
        if (names || ratio || cm)
            return duet_err_set(err, DUET_EINVAL, "config: %s%s needs \"pipeline\": [\"redact\"] or [\"compress\"]",
                                where, names ? "pii_names" : ratio ? "compress_ratio" : "compress_model");
        return 0;
    }
    if (!cJSON_IsArray(st))
        return duet_err_set(err, DUET_EINVAL, "config: %spipeline must be an array of stages (\"redact\", \"compress\")",
                            where);
    int i = 0;
    for (const cJSON *s = st->child; s; s = s->next, i++) {
        const char *n = cJSON_IsString(s) ? s->valuestring : NULL;
        if (n && !strcmp(n, "redact")) p->redact = 1;
        else if (n && !strcmp(n, "compress")) p->compress = 1;
        else if (n && (!strcmp(n, "generate") || !strcmp(n, "restore"))) {} /* always run / follows from redact */
        else return duet_err_set(err, DUET_EINVAL, "config: %spipeline[%d]: unknown stage '%.32s' (stages: redact, "
                                 "compress)", where, i, n ? n : "(not a string)");
    }
    if (!p->redact && !p->compress)
        return duet_err_set(err, DUET_EINVAL, "config: %spipeline names no stage (stages: redact, compress)", where);
    if (names && (!cJSON_IsString(names) || !names->valuestring[0] || strlen(names->valuestring) >= sizeof p->pii_names))
        return duet_err_set(err, DUET_EINVAL, "config: %spii_names must be a file name (at most %zu bytes)", where,
                            sizeof p->pii_names - 1);
    if (names && !p->redact) return duet_err_set(err, DUET_EINVAL, "config: %spii_names needs the redact stage", where);
    if (names) { /* read it once now: a missing file or a bad line fails at start-up, not on a request */
        snprintf(p->pii_names, sizeof p->pii_names, "%s", names->valuestring);
        duet_redact_params rp = duet_redact_default_params();
        rp.names_file = p->pii_names;
        duet_redactor *r = NULL;
        const int rc = duet_redactor_new(&r, &rp, err);
        duet_redactor_free(r);
        if (rc < 0) return duet_err_prefix(err, "config: %spii_names", where), rc;
    }
    if ((ratio || cm) && !p->compress)
        return duet_err_set(err, DUET_EINVAL, "config: %s%s needs the compress stage", where,
                            ratio ? "compress_ratio" : "compress_model");
    if (ratio && (!cJSON_IsNumber(ratio) || !(ratio->valuedouble > 0 && ratio->valuedouble <= 1)))
        return duet_err_set(err, DUET_EINVAL, "config: %scompress_ratio must be a number in (0, 1]", where);
    if (ratio) p->compress_ratio = ratio->valuedouble;
    if (!p->compress) return 0;
    if (cm) {
        p->compress_model = -1;
        for (int m = 0; cJSON_IsString(cm) && m < c->n_models; m++)
            if (!strcmp(c->models[m].name, cm->valuestring)) p->compress_model = m;
        if (p->compress_model < 0)
            return duet_err_set(err, DUET_ENOTFOUND, "config: %scompress_model must name one of the models", where);
    } else { /* the profile's own SLM when it has a local one */
        p->compress_model = p->draft >= 0 ? p->draft : c->models[p->model].remote_url[0] ? -1 : p->model;
        if (p->compress_model < 0)
            return duet_err_set(err, DUET_EINVAL, "config: %scompress_model is needed: the compress stage runs on a "
                                "local model, and this profile has none", where);
    }
    if (c->models[p->compress_model].remote_url[0])
        return duet_err_set(err, DUET_EINVAL, "config: %scompress_model '%s' is remote: compress runs on a local "
                            "model (the prompt must not leave before it is redacted)", where,
                            c->models[p->compress_model].name);
    return 0;
}

int srv_pipeline_on(const srv_req *r) { return r->prof.redact || r->prof.compress; }

static int fail(srv_error *e, int status, const char *param, const char *msg) {
    e->status = status;
    snprintf(e->message, sizeof e->message, "%s", msg);
    snprintf(e->param, sizeof e->param, "%s", param);
    return -1;
}

int srv_pipeline_text(const srv_config *c, srv_req *r, const char *text, char **out, const char *param,
                      srv_error *e) {
    duet_err err = {0};
    char *t = NULL;
    *out = NULL;
    if (r->prof.redact) {
        if (!r->redactor) {
            duet_redact_params rp = duet_redact_default_params();
            rp.names_file = r->prof.pii_names[0] ? r->prof.pii_names : NULL;
            if (duet_redactor_new(&r->redactor, &rp, &err) < 0) return fail(e, 500, param, err.msg);
        }
        const int n = duet_redact(r->redactor, text, strlen(text), &t, &err);
        if (n < 0) return fail(e, 400, param, err.msg);
        r->n_redacted += n;
    } else if (!(t = strdup(text))) {
        return fail(e, 500, param, "out of memory");
    }
    if (r->prof.compress && t[0]) {
        /* on this HTTP thread: the model serialises evaluations (model.h), and the sequence is this request's */
        const srv_model *m = &c->models[r->prof.compress_model];
        if (!r->compress_lm && duet_lm_local_new(&r->compress_lm, m->model, 0, "compress", &err) < 0) {
            free(t);
            return fail(e, 500, param, err.msg);
        }
        duet_compress_params cp = duet_compress_default_params();
        cp.keep_ratio = r->prof.compress_ratio;
        char *cut;
        int n_in = 0, n_kept = 0;
        const int rc = duet_compress_text_keep(r->compress_lm, m->vocab, t, &cp, r->redactor, &cut, &n_in, &n_kept, &err);
        free(t);
        if (rc < 0) return fail(e, rc == DUET_ERANGE || rc == DUET_EINVAL ? 400 : 500, param, err.msg);
        t = cut;
        r->n_tokens_in += n_in, r->n_tokens_kept += n_kept;
    }
    *out = t;
    return 0;
}

void srv_pipeline_json(cJSON *acc, const srv_req *r, srv_job *const *jobs, int n_jobs) {
    if (!srv_pipeline_on(r)) return;
    cJSON *o = cJSON_AddObjectToObject(acc, "pipeline");
    cJSON *stages = cJSON_AddArrayToObject(o, "stages");
    if (r->prof.redact) cJSON_AddItemToArray(stages, cJSON_CreateString("redact"));
    if (r->prof.compress) cJSON_AddItemToArray(stages, cJSON_CreateString("compress"));
    cJSON_AddItemToArray(stages, cJSON_CreateString("generate"));
    if (r->prof.redact) {
        cJSON_AddItemToArray(stages, cJSON_CreateString("restore"));
        cJSON_AddNumberToObject(o, "redacted", r->n_redacted);
        cJSON *by = cJSON_AddObjectToObject(o, "redacted_by_kind");
        for (int k = 0; k < DUET_PII_COUNT; k++)
            cJSON_AddNumberToObject(by, duet_pii_kind_name(k), r->redactor ? duet_redact_count_kind(r->redactor, k) : 0);
        int restored = 0;
        for (int i = 0; i < n_jobs; i++) restored += jobs[i]->n_restored;
        cJSON_AddNumberToObject(o, "restored", restored);
    }
    if (r->prof.compress) {
        cJSON_AddNumberToObject(o, "compress_ratio", r->prof.compress_ratio);
        cJSON_AddNumberToObject(o, "tokens_in", r->n_tokens_in);
        cJSON_AddNumberToObject(o, "tokens_kept", r->n_tokens_kept);
    }
}

void srv_pipeline_free(srv_req *r) {
    duet_lm_free(r->compress_lm);
    duet_redactor_free(r->redactor);
    r->compress_lm = NULL, r->redactor = NULL;
}
