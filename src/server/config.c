/* The server's models and profiles: from the simple flags (-m, --draft) or a
 * JSON config file (docs/server.md), and the resolution of the `model` field
 * of a request to a profile, parameters in the name included
 * ("duet-spec-k4": the duet-spec profile with a fixed draft length of 4). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/model.h"
#include "server/pipeline.h"
#include "server/server.h"

void srv_config_defaults(srv_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->host, sizeof c->host, "127.0.0.1");
    c->port = 8080;
    c->threads = 0;
    c->slots = 4;
    c->ctx = 0;
    c->queue = 64;
    c->time_limit_s = 600;
    c->body_limit = 1 << 20;
}

static int add_model(srv_config *c, const char *name, const char *path, duet_err *err) {
    if (c->n_models == SRV_MAX_MODELS) return duet_err_set(err, DUET_ERANGE, "config: more than %d models", SRV_MAX_MODELS);
    for (int i = 0; i < c->n_models; i++)
        if (!strcmp(c->models[i].name, name)) return duet_err_set(err, DUET_EINVAL, "config: model '%s' named twice", name);
    if (strlen(name) >= sizeof c->models[0].name || strlen(path) >= sizeof c->models[0].path)
        return duet_err_set(err, DUET_ERANGE, "config: model name or path too long ('%.40s')", name);
    srv_model *m = &c->models[c->n_models++];
    snprintf(m->name, sizeof m->name, "%s", name);
    snprintf(m->path, sizeof m->path, "%s", path);
    m->fallback = -1;
    return c->n_models - 1;
}

static int find_model(const srv_config *c, const char *name) {
    for (int i = 0; i < c->n_models; i++)
        if (!strcmp(c->models[i].name, name)) return i;
    return -1;
}

static srv_profile *add_profile(srv_config *c, const char *name, srv_kind kind, duet_err *err) {
    if (c->n_profiles == SRV_MAX_PROFILES) {
        duet_err_set(err, DUET_ERANGE, "config: more than %d profiles", SRV_MAX_PROFILES);
        return NULL;
    }
    if (!name[0] || strlen(name) >= sizeof c->profiles[0].name) {
        duet_err_set(err, DUET_EINVAL, "config: profile name '%.40s' is empty or too long", name);
        return NULL;
    }
    for (int i = 0; i < c->n_profiles; i++)
        if (!strcmp(c->profiles[i].name, name)) {
            duet_err_set(err, DUET_EINVAL, "config: profile '%s' defined twice", name);
            return NULL;
        }
    srv_profile *p = &c->profiles[c->n_profiles++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->kind = kind;
    p->draft = -1;
    p->tuned = -1;
    p->compress_model = -1;
    p->spec = duet_spec_default_params();
    return p;
}

int srv_config_simple(srv_config *c, const char *llm, const char *draft, duet_err *err) {
    int rc;
    if (!llm) return duet_err_set(err, DUET_EINVAL, "serve: need -m MODEL or --config FILE");
    if ((rc = add_model(c, "llm", llm, err)) < 0) return rc;
    srv_profile *p = add_profile(c, "llm", SRV_PLAIN, err);
    p->model = 0;
    if (draft) {
        if ((rc = add_model(c, "slm", draft, err)) < 0) return rc;
        p = add_profile(c, "slm", SRV_PLAIN, err);
        p->model = 1;
        p = add_profile(c, "duet-spec", SRV_SPEC, err);
        p->model = 0, p->draft = 1, p->parametric = 1;
        p->spec.use_model = 1, p->spec.use_ngram = 0;
    }
    p = add_profile(c, "duet-spec-ngram", SRV_SPEC, err);
    p->model = 0, p->parametric = 1;
    p->spec.use_model = 0, p->spec.use_ngram = 1;
    if (draft) { /* the SLM answers what it can, the LLM the rest */
        p = add_profile(c, "duet-route", SRV_ROUTE, err);
        p->model = 0, p->draft = 1, p->parametric = 1, p->param = 0.3f;
        p = add_profile(c, "duet-cascade", SRV_CASCADE, err);
        p->model = 0, p->draft = 1, p->param = -1.0f;
        p = add_profile(c, "duet-defer", SRV_DEFER, err);
        p->model = 0, p->draft = 1, p->parametric = 1, p->param = 0.4f;
        /* contrastive decoding: the LLM's tokens that the SLM does not also expect */
        p = add_profile(c, "duet-cd", SRV_FUSE, err);
        p->model = 0, p->draft = 1, p->fuse = duet_fuse_default_params(DUET_FUSE_CD);
    }
    return 0;
}

/* ---- the JSON file -------------------------------------------------------------- */

static int get_int(const cJSON *o, const char *key, int lo, int hi, int *out, const char *where, duet_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble || v->valueint < lo || v->valueint > hi)
        return duet_err_set(err, DUET_EINVAL, "config: %s%s must be an integer in [%d, %d]", where, key, lo, hi);
    *out = v->valueint;
    return 0;
}

static int get_str(const cJSON *o, const char *key, char *out, size_t cap, const char *where, duet_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return 0;
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap)
        return duet_err_set(err, DUET_EINVAL, "config: %s%s must be a string (at most %zu bytes)", where, key, cap - 1);
    snprintf(out, cap, "%s", v->valuestring);
    return 0;
}

static int get_bool(const cJSON *o, const char *key, int *out, const char *where, duet_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) return duet_err_set(err, DUET_EINVAL, "config: %s%s must be true or false", where, key);
    *out = cJSON_IsTrue(v);
    return 0;
}

/* A fusion profile: "rule" mix|poe|cd|proxy, "model" the LLM, "slm" the small
 * model (proxy: the base SLM), "slm_tuned" (proxy), "weight" (mix, poe),
 * "alpha" and "beta" (cd). */
static int load_fusion(srv_config *c, srv_profile *p, const cJSON *o, const char *where, duet_err *err) {
    static const char *const rules[] = {"mix", "poe", "cd", "proxy"};
    char rule[16] = "", slm[64] = "", tuned[64] = "";
    int rc;
    if ((rc = get_str(o, "rule", rule, sizeof rule, where, err)) || (rc = get_str(o, "slm", slm, sizeof slm, where, err)) ||
        (rc = get_str(o, "slm_tuned", tuned, sizeof tuned, where, err)))
        return rc;
    int r = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(rule, rules[i])) r = i;
    if (r < 0) return duet_err_set(err, DUET_EINVAL, "config: %srule '%s' is not mix, poe, cd or proxy", where, rule);
    p->fuse = duet_fuse_default_params((duet_fuse_rule)r);
    if (!slm[0] || (p->draft = find_model(c, slm)) < 0)
        return duet_err_set(err, DUET_ENOTFOUND, "config: %sslm '%s' is missing or not among the models", where, slm);
    if (r == DUET_FUSE_PROXY && (!tuned[0] || (p->tuned = find_model(c, tuned)) < 0))
        return duet_err_set(err, DUET_ENOTFOUND, "config: %sslm_tuned '%s' (proxy's tuned SLM) is missing or not among "
                            "the models", where, tuned);
    if (r != DUET_FUSE_PROXY && tuned[0])
        return duet_err_set(err, DUET_EINVAL, "config: %sslm_tuned is for rule proxy", where);
    static const char *const keys[] = {"weight", "alpha", "beta"};
    float *dst[] = {&p->fuse.weight, &p->fuse.alpha, &p->fuse.beta};
    for (int k = 0; k < 3; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, keys[k]);
        if (!v) continue;
        if ((k == 0 && r != DUET_FUSE_MIX && r != DUET_FUSE_POE) || (k > 0 && r != DUET_FUSE_CD))
            return duet_err_set(err, DUET_EINVAL, "config: %s%s is not a parameter of rule %s", where, keys[k], rule);
        if (!cJSON_IsNumber(v)) return duet_err_set(err, DUET_EINVAL, "config: %s%s must be a number", where, keys[k]);
        *dst[k] = (float)v->valuedouble;
    }
    if (duet_fuse_params_check(&p->fuse, err) < 0) {
        duet_err_prefix(err, "config: %s", where);
        return DUET_EINVAL;
    }
    const int ids[3] = {p->model, p->tuned, p->draft};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < i; j++)
            if (ids[i] >= 0 && ids[i] == ids[j])
                return duet_err_set(err, DUET_EINVAL, "config: %sfusion needs different models ('%s' twice)", where,
                                    c->models[ids[i]].name);
    return 0;
}

/* models.NAME = {"remote": URL, "model": NAME, "api_key_env": VAR, "timeout_s": S, "fallback": LOCAL} */
static int load_remote(srv_config *c, srv_model *m, const cJSON *o, duet_err *err) {
    char where[96];
    snprintf(where, sizeof where, "models.%.60s.", m->name);
    int rc;
    if ((rc = get_str(o, "remote", m->remote_url, sizeof m->remote_url, where, err)) ||
        (rc = get_str(o, "model", m->remote_model, sizeof m->remote_model, where, err)) ||
        (rc = get_str(o, "api_key_env", m->api_key_env, sizeof m->api_key_env, where, err)))
        return rc;
    if (strncmp(m->remote_url, "http://", 7) && strncmp(m->remote_url, "https://", 8))
        return duet_err_set(err, DUET_EINVAL, "config: %sremote must be an http:// or https:// URL", where);
    if (!m->remote_model[0]) memcpy(m->remote_model, m->name, sizeof m->remote_model); /* same size, terminated */
    m->timeout_s = 30;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "timeout_s");
    if (t && (!cJSON_IsNumber(t) || !(t->valuedouble > 0) || t->valuedouble > 3600))
        return duet_err_set(err, DUET_EINVAL, "config: %stimeout_s must be a number of seconds in (0, 3600]", where);
    if (t) m->timeout_s = t->valuedouble;
    static const char *const known[] = {"remote", "model", "api_key_env", "timeout_s", "fallback"};
    for (const cJSON *k = o->child; k; k = k->next) {
        int ok = 0;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) ok |= !strcmp(k->string, known[i]);
        if (!ok) return duet_err_set(err, DUET_EINVAL, "config: %s%s is not a field of a remote model", where, k->string);
    }
    (void)c;
    return 0;
}

static int load_profile(srv_config *c, const cJSON *o, int idx, duet_err *err) {
    char where[96], name[64] = "", strategy[32] = "plain", model[64] = "", draft[64] = "";
    snprintf(where, sizeof where, "profiles[%d].", idx);
    if (!cJSON_IsObject(o)) return duet_err_set(err, DUET_EINVAL, "config: profiles[%d] must be an object", idx);
    int rc;
    if ((rc = get_str(o, "name", name, sizeof name, where, err)) || (rc = get_str(o, "strategy", strategy, sizeof strategy, where, err)) ||
        (rc = get_str(o, "model", model, sizeof model, where, err)) || (rc = get_str(o, "draft", draft, sizeof draft, where, err)))
        return rc;
    if (!name[0]) return duet_err_set(err, DUET_EINVAL, "config: %sname is missing", where);
    srv_kind kind;
    if (!strcmp(strategy, "plain")) kind = SRV_PLAIN;
    else if (!strcmp(strategy, "speculative")) kind = SRV_SPEC;
    else if (!strcmp(strategy, "route")) kind = SRV_ROUTE;
    else if (!strcmp(strategy, "cascade")) kind = SRV_CASCADE;
    else if (!strcmp(strategy, "defer")) kind = SRV_DEFER;
    else if (!strcmp(strategy, "fusion")) kind = SRV_FUSE;
    else return duet_err_set(err, DUET_EINVAL,
                             "config: %sstrategy '%s' is not plain, speculative, route, cascade, defer or fusion", where,
                             strategy);
    srv_profile *p = add_profile(c, name, kind, err);
    if (!p) return DUET_EINVAL;
    if (!model[0] && c->n_models) snprintf(model, sizeof model, "%s", c->models[0].name);
    if ((p->model = find_model(c, model)) < 0)
        return duet_err_set(err, DUET_ENOTFOUND, "config: %smodel '%s' is not among the models", where, model);
    if (kind == SRV_PLAIN) return 0;
    if (c->models[p->model].remote_url[0] && (kind == SRV_DEFER || kind == SRV_FUSE))
        return duet_err_set(err, DUET_EINVAL, "config: %smodel '%s' is remote: strategy %s needs every token's full "
                            "distribution (a remote model is plain, speculative, route or cascade)", where, model,
                            strategy);
    if (kind == SRV_FUSE) return load_fusion(c, p, o, where, err);
    if (kind != SRV_SPEC) { /* two models: "model" the LLM, "slm" the small one, and one parameter */
        char slm[64] = "";
        if ((rc = get_str(o, "slm", slm, sizeof slm, where, err))) return rc;
        if (!slm[0] || (p->draft = find_model(c, slm)) < 0)
            return duet_err_set(err, DUET_ENOTFOUND, "config: %sslm '%s' is missing or not among the models", where, slm);
        if (c->models[p->draft].remote_url[0])
            return duet_err_set(err, DUET_EINVAL, "config: %sslm '%s' is remote: the SLM must be local", where, slm);
        const char *key = kind == SRV_ROUTE ? "llm_share" : kind == SRV_CASCADE ? "threshold" : "eta";
        p->param = kind == SRV_ROUTE ? 0.3f : kind == SRV_CASCADE ? -1.0f : 0.4f;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        if (v && (!cJSON_IsNumber(v) || (kind != SRV_CASCADE && (v->valuedouble < 0 || v->valuedouble > 1))))
            return duet_err_set(err, DUET_EINVAL, "config: %s%s must be a number%s", where, key,
                                kind != SRV_CASCADE ? " in [0, 1]" : "");
        if (v) p->param = (float)v->valuedouble;
        p->parametric = kind != SRV_CASCADE;
        if (kind == SRV_ROUTE) { /* a fitted router, checked now rather than at the first request */
            if ((rc = get_str(o, "router", p->router, sizeof p->router, where, err))) return rc;
            if (p->router[0]) {
                duet_router r;
                if (duet_router_load(&r, p->router, err) < 0)
                    return duet_err_prefix(err, "config: %srouter: ", where), DUET_EINVAL;
                duet_router_free(&r);
            }
        }
        return 0;
    }
    int ngram = 0, adaptive = 1;
    if ((rc = get_bool(o, "ngram", &ngram, where, err)) || (rc = get_bool(o, "adaptive", &adaptive, where, err)) ||
        (rc = get_int(o, "draft_max", 0, DUET_SPEC_KMAX, &p->spec.draft_max, where, err)))
        return rc;
    p->spec.use_ngram = ngram;
    p->spec.adaptive = adaptive;
    p->spec.use_model = draft[0] != 0;
    p->parametric = 1;
    if (draft[0] && (p->draft = find_model(c, draft)) < 0)
        return duet_err_set(err, DUET_ENOTFOUND, "config: %sdraft '%s' is not among the models", where, draft);
    if (draft[0] && c->models[p->draft].remote_url[0])
        return duet_err_set(err, DUET_EINVAL, "config: %sdraft '%s' is remote: drafts are made locally", where, draft);
    if (c->models[p->model].remote_url[0] && (ngram || !draft[0]))
        return duet_err_set(err, DUET_EINVAL, "config: %sa remote target verifies a local draft model's drafts "
                            "(\"draft\", no \"ngram\")", where);
    return duet_spec_params_check(&p->spec, err) < 0 ? (duet_err_prefix(err, "config: %s", where), DUET_EINVAL) : 0;
}

int srv_config_load_json(srv_config *c, const char *path, duet_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return duet_err_set(err, DUET_EIO, "config: cannot open %s", path);
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    int big = !feof(f);
    fclose(f);
    if (big) return duet_err_set(err, DUET_ERANGE, "config: %s is larger than 64 KiB", path);
    buf[n] = 0;
    cJSON *root = cJSON_ParseWithLength(buf, n);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return duet_err_set(err, DUET_EFORMAT, "config: %s is not a JSON object", path);
    }
    int rc = 0;
    if ((rc = get_str(root, "host", c->host, sizeof c->host, "", err)) || (rc = get_int(root, "port", 0, 65535, &c->port, "", err)) ||
        (rc = get_int(root, "threads", 1, 1024, &c->threads, "", err)) || (rc = get_int(root, "slots", 1, 256, &c->slots, "", err)) ||
        (rc = get_int(root, "ctx", 0, 1 << 20, &c->ctx, "", err)) || (rc = get_int(root, "queue", 0, 1 << 16, &c->queue, "", err)) ||
        (rc = get_str(root, "api_key", c->api_key, sizeof c->api_key, "", err)))
        goto done;
    const cJSON *tl = cJSON_GetObjectItemCaseSensitive(root, "time_limit_s");
    if (tl && (!cJSON_IsNumber(tl) || tl->valuedouble <= 0)) {
        rc = duet_err_set(err, DUET_EINVAL, "config: time_limit_s must be a positive number");
        goto done;
    }
    if (tl) c->time_limit_s = tl->valuedouble;
    /* bench option: a large model on a busy server (docs/edge-cloud.md) */
    const cJSON *fd = cJSON_GetObjectItemCaseSensitive(root, "forward_delay_ms");
    if (fd && (!cJSON_IsNumber(fd) || fd->valuedouble < 0 || fd->valuedouble > 60000)) {
        rc = duet_err_set(err, DUET_EINVAL, "config: forward_delay_ms must be a number of milliseconds in [0, 60000]");
        goto done;
    }
    if (fd) c->forward_delay_s = fd->valuedouble / 1000;
    if ((rc = get_bool(root, "private", &c->private_mode, "", err)) ||
        (rc = get_str(root, "egress_log", c->egress_log, sizeof c->egress_log, "", err)))
        goto done;
    const cJSON *models = cJSON_GetObjectItemCaseSensitive(root, "models");
    if (!cJSON_IsObject(models) || !models->child) {
        rc = duet_err_set(err, DUET_EINVAL, "config: \"models\" must be an object of name: {\"path\": ...}");
        goto done;
    }
    /* local models first: the first one's vocabulary is the server's, and remote models use it */
    for (int remote = 0; remote < 2; remote++)
        for (const cJSON *m = models->child; m; m = m->next) {
            const cJSON *p = cJSON_GetObjectItemCaseSensitive(m, "path");
            const cJSON *u = cJSON_GetObjectItemCaseSensitive(m, "remote");
            if (!cJSON_IsObject(m) || (!cJSON_IsString(p) && !cJSON_IsString(u)) || (p && u)) {
                rc = duet_err_set(err, DUET_EINVAL, "config: models.%s needs a \"path\" string (a GGUF file) or a "
                                  "\"remote\" URL, not both", m->string);
                goto done;
            }
            if ((u != NULL) != remote) continue;
            if ((rc = add_model(c, m->string, p ? p->valuestring : "", err)) < 0) goto done;
            if (remote && (rc = load_remote(c, &c->models[rc], m, err)) < 0) goto done;
        }
    if (c->models[0].remote_url[0]) {
        rc = duet_err_set(err, DUET_EINVAL, "config: models: at least one local model (a \"path\") is needed: its "
                          "vocabulary is the server's, and a remote model's fallback is local");
        goto done;
    }
    for (int i = 0; i < c->n_models; i++) { /* the fallbacks, by name, now that every model is known */
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(models, c->models[i].name);
        const cJSON *fb = c->models[i].remote_url[0] ? cJSON_GetObjectItemCaseSensitive(m, "fallback") : NULL;
        if (!fb) continue;
        if (!cJSON_IsString(fb) || (c->models[i].fallback = find_model(c, fb->valuestring)) < 0 ||
            c->models[c->models[i].fallback].remote_url[0]) {
            rc = duet_err_set(err, DUET_EINVAL, "config: models.%s.fallback must name a local model", c->models[i].name);
            goto done;
        }
    }
    const cJSON *profiles = cJSON_GetObjectItemCaseSensitive(root, "profiles");
    if (!cJSON_IsArray(profiles) || !profiles->child) {
        rc = duet_err_set(err, DUET_EINVAL, "config: \"profiles\" must be a non-empty array");
        goto done;
    }
    int i = 0;
    for (const cJSON *p = profiles->child; p; p = p->next, i++) {
        char where[64];
        snprintf(where, sizeof where, "profiles[%d].", i);
        if ((rc = load_profile(c, p, i, err)) < 0 ||
            (rc = srv_pipeline_load(c, &c->profiles[c->n_profiles - 1], p, where, err)) < 0)
            goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    if (rc < 0) duet_err_prefix(err, "%s", path);
    return rc < 0 ? rc : 0;
}

/* Opens and probes a remote model; a speculative profile on an endpoint that
 * answers but cannot verify is refused here, with the probe's words. */
static int open_remote(srv_config *c, int mi, duet_err *err) {
    srv_model *m = &c->models[mi];
    duet_remote_params p = duet_remote_default_params();
    p.url = m->remote_url, p.model = m->remote_model, p.timeout_s = m->timeout_s;
    p.private_mode = c->private_mode;
    p.egress_log = c->egress_log[0] ? c->egress_log : NULL;
    if (m->api_key_env[0] && !(p.api_key = getenv(m->api_key_env)))
        return duet_err_set(err, DUET_EINVAL, "model '%s': api_key_env: the variable %s is not set", m->name,
                            m->api_key_env);
    int rc = duet_remote_open(&m->remote, &p, err);
    if (rc < 0) return duet_err_prefix(err, "model '%s'", m->name), rc;
    if (c->private_mode) {
        fprintf(stderr, "serve: model %s: private mode: %s is never contacted%s\n", m->name, m->remote_url,
                m->fallback >= 0 ? "; its fallback answers" : "; its requests fail");
        return 0;
    }
    duet_remote_caps caps;
    duet_err pe = {0};
    const int reached = duet_remote_probe(m->remote, c->models[0].vocab, &caps, &pe) == 0;
    m->can_verify = reached && caps.prompt_logprobs;
    fprintf(stderr, "serve: model %s: %s\n", m->name, caps.report);
    for (int i = 0; i < c->n_profiles; i++) {
        const srv_profile *pr = &c->profiles[i];
        if (pr->kind != SRV_SPEC || pr->model != mi) continue;
        if (reached && !m->can_verify)
            return duet_err_set(err, DUET_EUNSUPPORTED, "profile '%s' verifies drafts on model '%s', which cannot: %s",
                                pr->name, m->name, caps.report);
        if (!reached)
            fprintf(stderr, "serve: warning: profile '%s': model %s is not reachable now; its requests are answered "
                            "by %s until it is\n", pr->name, m->name,
                    m->fallback >= 0 ? c->models[m->fallback].name : "nobody (no fallback: they fail)");
    }
    return 0;
}

int srv_config_load_models(srv_config *c, duet_err *err) {
    duet_model_params mp = duet_model_default_params();
    mp.n_threads = c->threads;
    for (int i = 0; i < c->n_models; i++) {
        srv_model *m = &c->models[i];
        if (m->remote_url[0]) {
            int rc = open_remote(c, i, err);
            if (rc < 0) return rc;
            continue;
        }
        if (i > 0) mp.pool = duet_model_pool(c->models[0].model); /* one pool: passes run one after another */
        int rc = duet_model_load(&m->model, m->path, &mp, err);
        if (rc < 0) return rc;
        if ((rc = duet_vocab_load(&m->vocab, duet_model_gguf(m->model), err)) < 0) {
            duet_err_prefix(err, "%s", m->path);
            return rc;
        }
        if (i > 0 && (rc = duet_vocab_check_compatible(c->models[0].vocab, m->vocab, err)) < 0) {
            duet_err_prefix(err, "model '%s' cannot work with '%s'", m->name, c->models[0].name);
            return rc;
        }
    }
    return 0;
}

int srv_model_ctx(const srv_config *c, int mi) {
    if (c->ctx > 0) return c->ctx;
    const int local = c->models[mi].remote_url[0] ? (c->models[mi].fallback >= 0 ? c->models[mi].fallback : 0) : mi;
    const int train = c->models[local].model ? duet_model_hparams(c->models[local].model)->n_ctx_train : 0;
    return train > 0 ? train : 2048;
}

void srv_config_free(srv_config *c) {
    for (int i = c->n_models - 1; i >= 0; i--) {
        duet_vocab_free(c->models[i].vocab);
        duet_model_free(c->models[i].model);
        duet_remote_free(c->models[i].remote);
        c->models[i].vocab = NULL, c->models[i].model = NULL, c->models[i].remote = NULL;
    }
}

int srv_profile_resolve(const srv_config *c, const char *name, srv_profile *out) {
    for (int i = 0; i < c->n_profiles; i++)
        if (!strcmp(c->profiles[i].name, name)) {
            *out = c->profiles[i];
            return i;
        }
    const char *dash = strrchr(name, '-');
    if (!dash) return -1;
    /* "<profile>-X": a route profile with LLM share X, a defer profile with eta X */
    if (dash[1] == '0' || dash[1] == '1' || dash[1] == '.') {
        char *end;
        const double x = strtod(dash + 1, &end);
        if (*end || !(x >= 0 && x <= 1)) return -1;
        for (int i = 0; i < c->n_profiles; i++) {
            const srv_profile *p = &c->profiles[i];
            if (!p->parametric || (p->kind != SRV_ROUTE && p->kind != SRV_DEFER) ||
                strlen(p->name) != (size_t)(dash - name) || strncmp(p->name, name, (size_t)(dash - name)))
                continue;
            *out = *p;
            snprintf(out->name, sizeof out->name, "%s", name);
            out->param = (float)x;
            return i;
        }
        return -1;
    }
    /* "<profile>-k<N>": a speculative profile with a fixed draft length N */
    if (dash[1] != 'k' || !dash[2]) return -1;
    char *end;
    long k = strtol(dash + 2, &end, 10);
    if (*end || k < 1 || k > DUET_SPEC_KMAX || dash[2] == '0' || dash[2] == '+') return -1;
    for (int i = 0; i < c->n_profiles; i++) {
        const srv_profile *p = &c->profiles[i];
        if (!p->parametric || p->kind != SRV_SPEC || strlen(p->name) != (size_t)(dash - name) ||
            strncmp(p->name, name, (size_t)(dash - name)))
            continue;
        *out = *p;
        snprintf(out->name, sizeof out->name, "%s", name);
        out->spec.draft_max = (int)k;
        out->spec.adaptive = 0;
        return i;
    }
    return -1;
}

void srv_profile_list(const srv_config *c, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < c->n_profiles && n < cap; i++) {
            if (pass == 1 && !c->profiles[i].parametric) continue;
            const srv_kind k = c->profiles[i].kind;
            n += (size_t)snprintf(buf + n, cap - n, "%s%s%s", n ? ", " : "", c->profiles[i].name,
                                  !pass ? "" : k == SRV_ROUTE ? "-<share>" : k == SRV_DEFER ? "-<eta>" : "-k<N>");
        }
}
