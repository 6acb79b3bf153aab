/* duet route-fit: fits a router on a calibration split (or a user's labelled
 * items), calibrates its threshold to a target LLM share, and writes it for
 * duet eval --router and the route strategy (duet_router_save).
 *
 * The label of an item is whether it needs the LLM. Unless the line gives
 * one ("label": 0/1), both models answer it greedily (the rule of duet eval)
 * and, by default (--label gain), label = 1 when the SLM is wrong and the LLM
 * right: the only requests where sending to the LLM changes the outcome.
 * (--label slm-wrong: 1 whenever the SLM is wrong, the items neither model
 * gets right included.) The signals come from one SLM pass over the prompt,
 * unless the line carries them ("signals": {name: value, ...}). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd_eval.h"
#include "opts.h"

static const char usage_head[] =
    "usage: duet route-fit --slm SLM -m LLM -f CALIB.jsonl -o ROUTER [--kind logistic|threshold|random]\n"
    "                      [--signal NAME] [--llm-share X] [--label gain|slm-wrong] [--json] [--dump FILE]\n"
    "  Fits a router on labelled items and calibrates its threshold so that --llm-share X of them go\n"
    "  to the LLM (logistic without --llm-share: P(needs the LLM) > 0.5). An item's label is the line's\n"
    "  \"label\" (0/1), else both models answer it (greedy, duet eval's rule) and label = 1 when the SLM\n"
    "  is wrong and the LLM right (--label gain, the default) or when the SLM is wrong (slm-wrong).\n"
    "  Signals: the line's \"signals\" object, else one SLM pass over the prompt. --dump writes the\n"
    "  labelled items with their signals: a file route-fit reads again without running a model.\n";

static int parse_share(const char *v, void *dest) {
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !(x >= 0 && x <= 1)) return -1;
    *(float *)dest = (float)x;
    return 0;
}

int cmd_route_fit(int argc, char **argv) {
    const char *slm = NULL, *llm = NULL, *path = NULL, *outp = NULL, *signal = NULL, *dump = NULL;
    int kind = 0, label_kind = 0, threads = duet_cli_default_threads(), max_new = EVAL_DEFAULT_MAX_NEW, batch = 8;
    int json = 0, quiet = 0, share_set = 0, use_hidden = 0;
    float share = 0.5f;
    static const char *const kinds[] = {"logistic", "threshold", "random", NULL};
    static const char *const labels[] = {"gain", "slm-wrong", NULL};
    const duet_opt opts[] = {
        DUET_OPT_STR("slm", 0, &slm, "SLM", "the small model (its signals route)"),
        DUET_OPT_STR("model", 'm', &llm, "LLM", "the large model"),
        DUET_OPT_STR("file", 'f', &path, "CALIB.jsonl", "the calibration items (required)"),
        DUET_OPT_STR("output", 'o', &outp, "ROUTER", "the router file to write (required)"),
        DUET_OPT_CHOICE("kind", 0, &kind, kinds, "logistic regression on the signals (default), one signal's "
                                                  "threshold, or the random baseline"),
        DUET_OPT_FLAG("hidden", 0, &use_hidden, "logistic: the SLM's pooled hidden state too (the L2 penalty by "
                                                "5-fold cross-validation)"),
        DUET_OPT_STR("signal", 0, &signal, "NAME", "threshold: the signal (default: the best by AUC on the labels)"),
        {.name = "llm-share", .type = DUET_OPTT_CUSTOM, .dest = &share, .parse = parse_share, .given = &share_set,
         .arg = "X in [0, 1]", .help = "calibrate the threshold to send this share of the items to the LLM"},
        DUET_OPT_CHOICE("label", 0, &label_kind, labels,
                        "label = SLM wrong and LLM right (gain, default), or SLM wrong (slm-wrong)"),
        DUET_OPT_INT("n-predict", 'n', &max_new, 1, 256, "N", "new tokens per item (default 4, as duet eval)"),
        DUET_OPT_INT("batch", 0, &batch, 1, 256, "N", "requests stepped together (default 8)"),
        DUET_OPT_STR("dump", 0, &dump, "FILE", "write the labelled items with their signals (jsonl)"),
        DUET_OPT_FLAG("json", 0, &json, "print one JSON object"),
        DUET_OPT_FLAG("quiet", 'q', &quiet, "no progress on stderr"),
        DUET_OPT_THREADS(&threads),
        DUET_OPT_END,
    };
    int rc = duet_opts_parse("route-fit", opts, argc, argv, usage_head);
    if (rc) return rc == 1 ? 0 : rc;
    const char *c = "route-fit";
    if (!path || !outp) return duet_opts_error(c, "need -f CALIB.jsonl and -o ROUTER (duet route-fit --help)");
    if (signal && eval_signal_index(signal) < 0)
        return duet_opts_error(c, "--signal takes %s", eval_signal_names());
    if (use_hidden && kind != 0) return duet_opts_error(c, "--hidden is for --kind logistic");
    if (signal && kind != 1) return duet_opts_error(c, "--signal is for --kind threshold");
    if (kind != 0 && !share_set) return duet_opts_error(c, "--kind %s needs --llm-share X", kinds[kind]);

    eval_items items = {0};
    eval_env env = {0};
    eval_out *o_slm = NULL, *o_llm = NULL;
    uint8_t *y = NULL;
    float *sig = NULL, *score = NULL, *hid = NULL;
    int8_t *ok_slm = NULL, *ok_llm = NULL;
    char *dump_text = NULL, *tmp = NULL;
    duet_router r;
    duet_router_init(&r, DUET_ROUTER_LOGISTIC);
    duet_err err = {0};
    int status = 1;

    if (eval_items_load(&items, path, c, 1) < 0) return 1;
    const int n = items.n;
    int need_sig = 0, need_label = 0;
    for (int i = 0; i < n; i++)
        need_sig |= !items.v[i].has_sig || (use_hidden && !items.v[i].hidden), need_label |= items.v[i].label < 0;
    if ((need_sig || need_label) && !slm) {
        fprintf(stderr, "duet route-fit: %s: some items lack %s: need --slm SLM\n", path,
                need_label ? "a label" : "signals");
        goto done;
    }
    if (need_label && !llm) {
        fprintf(stderr, "duet route-fit: %s: some items lack a label: need -m LLM to label them\n", path);
        goto done;
    }
    if (need_sig || need_label) {
        const char *paths[2] = {slm, llm}, *roles[2] = {"slm", "llm"};
        if (eval_env_open(&env, c, paths, roles, need_label ? 2 : 1, threads, max_new, batch) < 0) goto done;
        env.quiet = quiet;
        if (eval_items_tokenize(&env, &items) < 0) goto done;
    }
    if (need_sig && eval_signals(&env, 0, &items, NULL, &err) < 0) goto fail;
    const int n_hidden = use_hidden ? items.v[0].n_hidden : 0;
    for (int i = 0; i < n && use_hidden; i++)
        if (items.v[i].n_hidden != n_hidden) {
            fprintf(stderr, "duet route-fit: %s:%d: a hidden state of %d values, the first item's has %d\n", path,
                    items.v[i].line, items.v[i].n_hidden, n_hidden);
            goto done;
        }

    /* labels: both models answer the items that have none */
    ok_slm = malloc((size_t)n), ok_llm = malloc((size_t)n), y = malloc((size_t)n);
    sig = malloc(sizeof *sig * (size_t)n * DUET_ROUTE_NSIG), score = malloc(sizeof *score * (size_t)n);
    if (n_hidden) hid = malloc(sizeof *hid * (size_t)n * (size_t)n_hidden); /* (n, n_hidden) */
    if (!ok_slm || !ok_llm || !y || !sig || !score || (n_hidden && !hid)) goto oom;
    memset(ok_slm, -1, (size_t)n), memset(ok_llm, -1, (size_t)n);
    if (need_label) {
        eval_items sub = {.path = items.path};
        int *idx = malloc(sizeof *idx * (size_t)n);
        sub.v = malloc(sizeof *sub.v * (size_t)n);
        if (!idx || !sub.v) {
            free(idx), free(sub.v);
            goto oom;
        }
        for (int i = 0; i < n; i++)
            if (items.v[i].label < 0) idx[sub.n] = i, sub.v[sub.n++] = items.v[i]; /* shallow copies */
        o_slm = calloc((size_t)sub.n, sizeof *o_slm), o_llm = calloc((size_t)sub.n, sizeof *o_llm);
        eval_spec s0 = {.kind = EVAL_PLAIN, .model = 0, .slm = 0, .llm = 1}, s1 = s0;
        s1.model = 1;
        rc = !o_slm || !o_llm ? duet_err_set(&err, DUET_ENOMEM, "out of memory") : 0;
        if (rc == 0) rc = eval_run(&env, &s0, &sub, o_slm, "label: slm", &err);
        if (rc == 0) rc = eval_run(&env, &s1, &sub, o_llm, "label: llm", &err);
        for (int k = 0; rc == 0 && k < sub.n; k++) {
            const int i = idx[k];
            ok_slm[i] = (int8_t)o_slm[k].correct, ok_llm[i] = (int8_t)o_llm[k].correct;
            items.v[i].label = label_kind == 0 ? !o_slm[k].correct && o_llm[k].correct : !o_slm[k].correct;
        }
        if (o_slm) eval_outs_free(o_slm, sub.n);
        if (o_llm) eval_outs_free(o_llm, sub.n);
        free(idx), free(sub.v);
        if (rc < 0) goto fail;
    }
    int pos = 0;
    for (int i = 0; i < n; i++) {
        y[i] = (uint8_t)items.v[i].label;
        pos += y[i];
        memcpy(sig + (size_t)i * DUET_ROUTE_NSIG, items.v[i].sig, sizeof items.v[i].sig);
        if (n_hidden) memcpy(hid + (size_t)i * n_hidden, items.v[i].hidden, sizeof *hid * (size_t)n_hidden);
    }

    /* how well each signal alone orders the labels */
    double auc[DUET_ROUTE_NSIG];
    int best = 0;
    for (int k = 0; k < DUET_ROUTE_NSIG; k++) {
        for (int i = 0; i < n; i++) score[i] = sig[(size_t)i * DUET_ROUTE_NSIG + k];
        auc[k] = eval_auc(score, y, n);
        if (!(auc[best] >= auc[k])) best = k;
    }
    if (kind == 0) {
        if (duet_router_fit_h(&r, sig, hid, n_hidden, y, n, &err) < 0) goto fail;
    } else if (kind == 1) {
        duet_router_init(&r, DUET_ROUTER_THRESHOLD);
        r.signal = signal ? eval_signal_index(signal) : best;
    } else {
        duet_router_init(&r, DUET_ROUTER_RANDOM);
    }
    for (int i = 0; i < n; i++)
        score[i] = duet_router_score_h(&r, sig + (size_t)i * DUET_ROUTE_NSIG, hid ? hid + (size_t)i * n_hidden : NULL);
    if (share_set && duet_router_calibrate(&r, score, n, share, &err) < 0) goto fail;
    const double auc_router = eval_auc(score, y, n);
    int routed = 0, acc_n = 0, acc_ok = 0, slm_right = 0, llm_right = 0;
    for (int i = 0; i < n; i++) {
        const int to_llm = r.kind == DUET_ROUTER_RANDOM ? score[i] < r.share : score[i] > r.threshold;
        routed += to_llm;
        if (ok_slm[i] >= 0) {
            acc_n++;
            acc_ok += to_llm ? ok_llm[i] : ok_slm[i];
            slm_right += ok_slm[i], llm_right += ok_llm[i];
        }
    }

    /* write the router: a temporary file, then a rename */
    size_t tl = strlen(outp) + 32;
    if (!(tmp = malloc(tl))) goto oom;
    snprintf(tmp, tl, "%s.tmp.%ld", outp, (long)getpid());
    if (duet_router_save(&r, tmp, &err) < 0) {
        unlink(tmp);
        goto fail;
    }
    if (rename(tmp, outp) != 0) {
        unlink(tmp);
        fprintf(stderr, "duet route-fit: cannot write %s\n", outp);
        goto done;
    }

    if (dump) {
        size_t len = 0, cap = 1 << 16;
        dump_text = malloc(cap);
        for (int i = 0; dump_text && i < n; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "id", items.v[i].id);
            cJSON_AddStringToObject(o, "prompt", items.v[i].prompt);
            if (items.v[i].answer) cJSON_AddStringToObject(o, "answer", items.v[i].answer);
            cJSON_AddNumberToObject(o, "label", y[i]);
            if (ok_slm[i] >= 0) cJSON_AddBoolToObject(o, "slm_correct", ok_slm[i]);
            if (ok_llm[i] >= 0) cJSON_AddBoolToObject(o, "llm_correct", ok_llm[i]);
            cJSON *s = cJSON_AddObjectToObject(o, "signals");
            for (int k = 0; k < DUET_ROUTE_NSIG; k++)
                cJSON_AddNumberToObject(s, duet_signal_name(k), sig[(size_t)i * DUET_ROUTE_NSIG + k]);
            if (items.v[i].hidden)
                cJSON_AddItemToObject(o, "hidden", cJSON_CreateFloatArray(items.v[i].hidden, items.v[i].n_hidden));
            cJSON_AddNumberToObject(o, "score", score[i]);
            char *line = cJSON_PrintUnformatted(o);
            cJSON_Delete(o);
            size_t ln = line ? strlen(line) : 0;
            if (line && len + ln + 2 > cap) {
                char *t = realloc(dump_text, cap = (len + ln + 2) * 2);
                if (!t) free(dump_text);
                dump_text = t;
            }
            if (!line || !dump_text) {
                free(line);
                free(dump_text);
                dump_text = NULL;
                break;
            }
            memcpy(dump_text + len, line, ln);
            len += ln;
            dump_text[len++] = '\n';
            free(line);
        }
        if (!dump_text) goto oom;
        if (eval_write_atomic(c, dump, dump_text, len) < 0) goto done;
    }

    static const char *kind_names[] = {"threshold", "logistic", "random"};
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "router", outp);
        cJSON_AddStringToObject(o, "kind", kind_names[r.kind]);
        cJSON_AddNumberToObject(o, "hidden", r.n_hidden);
        if (r.kind == DUET_ROUTER_THRESHOLD) cJSON_AddStringToObject(o, "signal", duet_signal_name(r.signal));
        cJSON_AddNumberToObject(o, "threshold", isfinite(r.threshold) ? r.threshold : 0);
        cJSON_AddStringToObject(o, "label", need_label ? labels[label_kind] : "given");
        cJSON_AddNumberToObject(o, "n_items", n);
        cJSON_AddNumberToObject(o, "positives", pos);
        if (share_set) cJSON_AddNumberToObject(o, "llm_share_target", share);
        cJSON_AddNumberToObject(o, "llm_share", (double)routed / n);
        cJSON *a = cJSON_AddObjectToObject(o, "auc");
        for (int k = 0; k < DUET_ROUTE_NSIG; k++) {
            if (isnan(auc[k])) cJSON_AddNullToObject(a, duet_signal_name(k));
            else cJSON_AddNumberToObject(a, duet_signal_name(k), auc[k]);
        }
        if (isnan(auc_router)) cJSON_AddNullToObject(a, "router");
        else cJSON_AddNumberToObject(a, "router", auc_router);
        if (acc_n) {
            cJSON_AddNumberToObject(o, "slm_accuracy", (double)slm_right / acc_n);
            cJSON_AddNumberToObject(o, "llm_accuracy", (double)llm_right / acc_n);
            cJSON_AddNumberToObject(o, "routed_accuracy", (double)acc_ok / acc_n);
        }
        char *js = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!js) goto oom;
        printf("%s\n", js);
        free(js);
    } else {
        printf("router %s: %s", outp, kind_names[r.kind]);
        if (r.kind == DUET_ROUTER_THRESHOLD) printf(" on %s", duet_signal_name(r.signal));
        if (r.kind == DUET_ROUTER_RANDOM) printf(", P(LLM) %.4g\n", r.share);
        else printf(", threshold %.6g\n", r.threshold);
        printf("items %d, label = %s: %d positive (%.3f)\n", n,
               !need_label ? "the file's" : label_kind == 0 ? "SLM wrong and LLM right" : "SLM wrong", pos,
               (double)pos / n);
        printf("AUC of each signal against the labels:");
        for (int k = 0; k < DUET_ROUTE_NSIG; k++) printf(" %s %.3f", duet_signal_name(k), auc[k]);
        printf("\nAUC of the router's score %.3f; it sends %.3f of these items to the LLM\n", auc_router,
               (double)routed / n);
        if (acc_n)
            printf("on these items: slm %.4f, llm %.4f, routed %.4f\n", (double)slm_right / acc_n,
                   (double)llm_right / acc_n, (double)acc_ok / acc_n);
    }
    status = 0;
    goto done;
oom:
    duet_err_set(&err, DUET_ENOMEM, "out of memory");
fail:
    fprintf(stderr, "duet route-fit: %s\n", err.msg);
done:
    free(o_slm), free(o_llm), free(y), free(sig), free(score), free(hid), free(ok_slm), free(ok_llm), free(dump_text), free(tmp);
    duet_router_free(&r);
    eval_items_free(&items);
    if (env.cmd) eval_env_close(&env);
    return status;
}
