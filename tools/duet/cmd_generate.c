/* duet generate: plain or speculative generation, streamed as text. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duet/generate.h"
#include "duet/lm_local.h"
#include "duet/model.h"
#include "duet/sample.h"
#include "duet/speculative.h"
#include "duet/tok.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: duet generate -m MODEL (-p TEXT | --tokens \"ID ...\") [-n N] [options]\n"
            "  -n N                 new tokens (default 128)\n"
            "  --chat               treat -p as a user message and apply the model's chat template\n"
            "  --chat-template NAME override the template (chatml, llama2, llama3, mistral, zephyr, phi3, gemma)\n"
            "  --temp T             temperature, 0 = greedy (default 0.8)\n"
            "  --top-k K --top-p P --min-p P    filters (defaults 40, 0.95, 0.05)\n"
            "  --repeat-penalty R --freq-penalty F --presence-penalty P --penalty-last-n N\n"
            "  --seed S             RNG seed (default: from the clock, printed in the stats)\n"
            "  -t N                 threads (default: all CPUs)\n"
            "  --ctx N              context length (default: the model's)\n"
            "  --kv-type f16|f32    KV cache type (default f16)\n"
            "  --ignore-eos         do not stop at end-of-generation tokens\n"
            "speculative decoding:\n"
            "  --draft SLM|ngram|SLM+ngram   draft with a small model, n-grams of the text, or both\n"
            "  --draft-max K        longest draft (default 8)   --draft-min K  (default 0)\n"
            "  --draft-p-min P      stop drafting below this draft confidence (default 0)\n"
            "  --spec fixed|adaptive   fixed length or the length maximising expected tokens/s (default adaptive)\n"
            "output:\n"
            "  --stats              also the acceptance per draft position (one stats line is always printed)\n"
            "  --json               print one JSON object (text, ids, stats) instead of streaming\n");
}

typedef struct {
    duet_vocab *vocab;        /* NULL: print ids */
    duet_detok_stream *detok;
    int ignore_eos, json, n_out;
    int32_t *ids;             /* (cap) generated ids, for --json */
    int cap;
    char *text;               /* generated text, for --json */
    size_t text_len, text_cap;
} sink;

static void sink_text(sink *k, const char *s, size_t n) {
    if (!k->json) {
        fwrite(s, 1, n, stdout);
        fflush(stdout);
        return;
    }
    if (k->text_len + n + 1 > k->text_cap) {
        size_t cap = (k->text_len + n + 1) * 2;
        char *t = realloc(k->text, cap);
        if (!t) return;
        k->text = t, k->text_cap = cap;
    }
    memcpy(k->text + k->text_len, s, n);
    k->text_len += n;
    k->text[k->text_len] = 0;
}

static int on_token(void *user, int32_t tok) {
    sink *k = user;
    if (k->n_out < k->cap) k->ids[k->n_out++] = tok;
    int eog = k->vocab && duet_vocab_is_eog(k->vocab, tok);
    if (eog && !k->ignore_eos) return 1;
    if (k->vocab) {
        size_t n;
        const char *s = duet_detok_stream_push(k->detok, tok, &n);
        if (s && n) sink_text(k, s, n);
    } else {
        char buf[24];
        int n = snprintf(buf, sizeof buf, "%s%" PRId32, k->n_out > 1 ? " " : "", tok);
        sink_text(k, buf, (size_t)n);
    }
    return 0;
}

static int parse_ids(const char *s, int32_t **out, int n_vocab) {
    int cap = 64, n = 0;
    int32_t *ids = malloc(sizeof *ids * (size_t)cap);
    while (ids && *s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s) {
            if (*s == ' ' || *s == ',' || *s == '\n' || *s == '\t') { s++; continue; }
            free(ids);
            return -1;
        }
        if (errno || v < 0 || v >= n_vocab) { free(ids); return -2; }
        if (n == cap) {
            int32_t *t = realloc(ids, sizeof *ids * (size_t)(cap *= 2));
            if (!t) { free(ids); return -1; }
            ids = t;
        }
        ids[n++] = (int32_t)v;
        s = end;
    }
    *out = ids;
    return ids ? n : -1;
}

/* Vocabularies must agree token by token; a larger target vocabulary is fine
 * if its extra ids are padding the draft never needs. */
static int vocab_compatible(const duet_vocab *target, const duet_vocab *draft, char *why, size_t cap) {
    int nt = duet_vocab_n(target), nd = duet_vocab_n(draft);
    if (nd > nt) {
        snprintf(why, cap, "the draft vocabulary (%d tokens) is larger than the target's (%d)", nd, nt);
        return 0;
    }
    for (int i = 0; i < nd; i++) {
        size_t la, lb;
        const char *a = duet_vocab_text(target, i, &la), *b = duet_vocab_text(draft, i, &lb);
        if (la != lb || memcmp(a, b, la)) {
            snprintf(why, cap, "token %d differs: target '%.40s', draft '%.40s'", i, a, b);
            return 0;
        }
    }
    return 1;
}

typedef struct {
    const char *model, *prompt, *tokens, *draft, *chat_template, *kv;
    int n_new, threads, ctx, chat, stats, json, ignore_eos, seed_set, adaptive;
    duet_sampler_params sp;
    duet_spec_params spec;
} gen_args;

static int parse_args(int argc, char **argv, gen_args *a) {
    memset(a, 0, sizeof *a);
    a->n_new = 128;
    a->sp = duet_sampler_default_params();
    a->spec = duet_spec_default_params();
    a->adaptive = 1;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define TAKES_VALUE() do { if (!v) { fprintf(stderr, "duet generate: %s needs a value\n", o); return 2; } i++; } while (0)
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) { usage(stdout); return 1; }
        else if (!strcmp(o, "-m")) { TAKES_VALUE(); a->model = v; }
        else if (!strcmp(o, "-p")) { TAKES_VALUE(); a->prompt = v; }
        else if (!strcmp(o, "--tokens")) { TAKES_VALUE(); a->tokens = v; }
        else if (!strcmp(o, "-n")) { TAKES_VALUE(); a->n_new = atoi(v); }
        else if (!strcmp(o, "-t")) { TAKES_VALUE(); a->threads = atoi(v); }
        else if (!strcmp(o, "--ctx")) { TAKES_VALUE(); a->ctx = atoi(v); }
        else if (!strcmp(o, "--kv-type")) { TAKES_VALUE(); a->kv = v; }
        else if (!strcmp(o, "--chat")) a->chat = 1;
        else if (!strcmp(o, "--chat-template")) { TAKES_VALUE(); a->chat_template = v; a->chat = 1; }
        else if (!strcmp(o, "--temp")) { TAKES_VALUE(); a->sp.temp = strtof(v, NULL); }
        else if (!strcmp(o, "--top-k")) { TAKES_VALUE(); a->sp.top_k = atoi(v); }
        else if (!strcmp(o, "--top-p")) { TAKES_VALUE(); a->sp.top_p = strtof(v, NULL); }
        else if (!strcmp(o, "--min-p")) { TAKES_VALUE(); a->sp.min_p = strtof(v, NULL); }
        else if (!strcmp(o, "--repeat-penalty")) { TAKES_VALUE(); a->sp.repeat_penalty = strtof(v, NULL); }
        else if (!strcmp(o, "--freq-penalty")) { TAKES_VALUE(); a->sp.freq_penalty = strtof(v, NULL); }
        else if (!strcmp(o, "--presence-penalty")) { TAKES_VALUE(); a->sp.presence_penalty = strtof(v, NULL); }
        else if (!strcmp(o, "--penalty-last-n")) { TAKES_VALUE(); a->sp.penalty_last_n = atoi(v); }
        else if (!strcmp(o, "--seed")) { TAKES_VALUE(); a->sp.seed = strtoull(v, NULL, 10); a->seed_set = 1; }
        else if (!strcmp(o, "--ignore-eos")) a->ignore_eos = 1;
        else if (!strcmp(o, "--stats")) a->stats = 1;
        else if (!strcmp(o, "--json")) a->json = 1;
        else if (!strcmp(o, "--draft")) { TAKES_VALUE(); a->draft = v; }
        else if (!strcmp(o, "--draft-max")) { TAKES_VALUE(); a->spec.draft_max = atoi(v); }
        else if (!strcmp(o, "--draft-min")) { TAKES_VALUE(); a->spec.draft_min = atoi(v); }
        else if (!strcmp(o, "--draft-p-min")) { TAKES_VALUE(); a->spec.draft_p_min = strtof(v, NULL); }
        else if (!strcmp(o, "--spec")) {
            TAKES_VALUE();
            if (strcmp(v, "fixed") && strcmp(v, "adaptive")) {
                fprintf(stderr, "duet generate: --spec takes fixed or adaptive, not '%s'\n", v);
                return 2;
            }
            a->adaptive = !strcmp(v, "adaptive");
        } else {
            fprintf(stderr, "duet generate: unknown option '%s' (duet generate --help)\n", o);
            return 2;
        }
#undef TAKES_VALUE
    }
    if (!a->model || (!a->prompt == !a->tokens)) {
        fprintf(stderr, "duet generate: need -m MODEL and exactly one of -p TEXT or --tokens IDS\n");
        return 2;
    }
    if (a->n_new < 0 || a->spec.draft_max < 0 || a->spec.draft_max > DUET_SPEC_KMAX) {
        fprintf(stderr, "duet generate: -n must be >= 0 and --draft-max within 0..%d\n", DUET_SPEC_KMAX);
        return 2;
    }
    if (a->kv && strcmp(a->kv, "f16") && strcmp(a->kv, "f32")) {
        fprintf(stderr, "duet generate: --kv-type takes f16 or f32, not '%s'\n", a->kv);
        return 2;
    }
    if (!a->seed_set) a->sp.seed = (uint64_t)time(NULL);
    a->spec.adaptive = a->adaptive;
    return 0;
}

/* The prompt as token ids: --tokens as given, -p tokenized (after the chat template). */
static int prompt_ids(const gen_args *a, const duet_vocab *vocab, int n_vocab, int32_t **ids) {
    if (a->tokens) {
        int n = parse_ids(a->tokens, ids, n_vocab);
        if (n == -2) fprintf(stderr, "duet generate: --tokens holds an id outside [0, %d)\n", n_vocab);
        else if (n < 0) fprintf(stderr, "duet generate: --tokens must be integers separated by spaces\n");
        return n;
    }
    if (!vocab) {
        fprintf(stderr, "duet generate: this model has no tokenizer; use --tokens\n");
        return -1;
    }
    char *text = NULL;
    int flags = duet_vocab_add_bos(vocab) ? DUET_TOK_ADD_BOS : 0;
    if (a->chat) {
        duet_err err = {0};
        duet_chat_template t;
        const char *src = a->chat_template ? a->chat_template : duet_vocab_chat_template(vocab);
        if (!src) {
            fprintf(stderr, "duet generate: the model has no chat template; pick one with --chat-template (%s)\n",
                    duet_chat_template_names());
            return -1;
        }
        duet_chat_msg msg = {"user", a->prompt};
        if (duet_chat_detect(src, &t, &err) < 0 || duet_chat_apply(t, &msg, 1, 1, &text, NULL, &err) < 0) {
            fprintf(stderr, "duet generate: %s\n", err.msg);
            return -1;
        }
        flags |= DUET_TOK_PARSE_SPECIAL; /* the template's own markers, never the user's text alone */
    }
    const char *src = text ? text : a->prompt;
    int n = duet_tokenize_alloc(vocab, src, strlen(src), flags, ids);
    free(text);
    if (n < 0) fprintf(stderr, "duet generate: could not tokenize the prompt\n");
    if (n == 0) fprintf(stderr, "duet generate: the prompt is empty\n");
    return n > 0 ? n : -1;
}

static void print_stats_json(cJSON *o, const gen_args *a, int spec, const duet_spec_stats *ss,
                             const duet_gen_stats *gs) {
    cJSON_AddNumberToObject(o, "seed", (double)a->sp.seed);
    if (!spec) {
        cJSON_AddNumberToObject(o, "n_prompt", gs->n_prompt);
        cJSON_AddNumberToObject(o, "n_generated", gs->n_generated);
        cJSON_AddNumberToObject(o, "prefill_s", gs->t_prefill);
        cJSON_AddNumberToObject(o, "decode_s", gs->t_decode);
        cJSON_AddNumberToObject(o, "prefill_tok_s", gs->t_prefill > 0 ? gs->n_prompt / gs->t_prefill : 0);
        cJSON_AddNumberToObject(o, "decode_tok_s", gs->t_decode > 0 ? gs->n_generated / gs->t_decode : 0);
        return;
    }
    double t_gen = ss->t_total - ss->t_prefill;
    cJSON_AddNumberToObject(o, "n_prompt", ss->n_prompt);
    cJSON_AddNumberToObject(o, "n_generated", ss->n_generated);
    cJSON_AddNumberToObject(o, "prefill_s", ss->t_prefill);
    cJSON_AddNumberToObject(o, "decode_s", t_gen);
    cJSON_AddNumberToObject(o, "decode_tok_s", t_gen > 0 ? ss->n_generated / t_gen : 0);
    cJSON_AddNumberToObject(o, "rounds", ss->rounds);
    cJSON_AddNumberToObject(o, "drafted", ss->drafted);
    cJSON_AddNumberToObject(o, "accepted", ss->accepted);
    cJSON_AddNumberToObject(o, "drafted_model", ss->drafted_model);
    cJSON_AddNumberToObject(o, "accepted_model", ss->accepted_model);
    cJSON_AddNumberToObject(o, "drafted_ngram", ss->drafted_ngram);
    cJSON_AddNumberToObject(o, "accepted_ngram", ss->accepted_ngram);
    cJSON_AddNumberToObject(o, "acceptance_rate", ss->drafted ? (double)ss->accepted / ss->drafted : 0);
    int spec_rounds = ss->drafted_at[0]; /* rounds that drafted at least one token */
    cJSON_AddNumberToObject(o, "mean_accepted_length", spec_rounds ? (double)ss->accepted / spec_rounds : 0);
    cJSON_AddNumberToObject(o, "target_evals", ss->target_evals);
    cJSON_AddNumberToObject(o, "draft_evals", ss->draft_evals);
    cJSON_AddNumberToObject(o, "draft_s", ss->t_draft);
    cJSON_AddNumberToObject(o, "target_s", ss->t_target);
    cJSON_AddNumberToObject(o, "other_s", t_gen - ss->t_draft - ss->t_target);
    cJSON *pos = cJSON_AddArrayToObject(o, "acceptance_by_position");
    for (int i = 0; i < DUET_SPEC_KMAX && ss->drafted_at[i]; i++)
        cJSON_AddItemToArray(pos, cJSON_CreateNumber((double)ss->accepted_at[i] / ss->drafted_at[i]));
}

static void print_stats_line(const gen_args *a, int spec, const duet_spec_stats *ss, const duet_gen_stats *gs) {
    if (!spec) {
        fprintf(stderr, "\n[stats] prompt %d tok, %.1f tok/s | generated %d tok, %.1f tok/s | seed %" PRIu64 "\n",
                gs->n_prompt, gs->t_prefill > 0 ? gs->n_prompt / gs->t_prefill : 0, gs->n_generated,
                gs->t_decode > 0 ? gs->n_generated / gs->t_decode : 0, a->sp.seed);
        return;
    }
    double t_gen = ss->t_total - ss->t_prefill;
    fprintf(stderr,
            "\n[stats] prompt %d tok | generated %d tok, %.1f tok/s | drafted %d, accepted %d (%.1f%%), "
            "mean accepted length %.2f | target evals %d, draft evals %d | time: draft %.3fs, target %.3fs, "
            "other %.3fs | seed %" PRIu64 "\n",
            ss->n_prompt, ss->n_generated, t_gen > 0 ? ss->n_generated / t_gen : 0, ss->drafted, ss->accepted,
            ss->drafted ? 100.0 * ss->accepted / ss->drafted : 0,
            ss->drafted_at[0] ? (double)ss->accepted / ss->drafted_at[0] : 0, ss->target_evals, ss->draft_evals,
            ss->t_draft, ss->t_target, t_gen - ss->t_draft - ss->t_target, a->sp.seed);
    if (!a->stats) return;
    fprintf(stderr, "[stats] acceptance by draft position:");
    for (int i = 0; i < DUET_SPEC_KMAX && ss->drafted_at[i]; i++)
        fprintf(stderr, " %d:%.2f", i + 1, (double)ss->accepted_at[i] / ss->drafted_at[i]);
    fprintf(stderr, "\n");
}

int cmd_generate(int argc, char **argv) {
    gen_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;

    int status = 1;
    duet_err err = {0};
    duet_model *tm = NULL, *dm = NULL;
    duet_seq *ts = NULL, *ds = NULL;
    duet_vocab *tv = NULL, *dv = NULL;
    duet_sampler *smp = NULL;
    int32_t *prompt = NULL;
    sink k = {0};

    duet_model_params mp = duet_model_default_params();
    mp.n_threads = a.threads;
    mp.kv_type = a.kv && !strcmp(a.kv, "f32") ? DUET_KV_F32 : DUET_KV_F16;
    if (duet_model_load(&tm, a.model, &mp, &err) < 0) goto fail;
    if (duet_gguf_find_key(duet_model_gguf(tm), "tokenizer.ggml.model") >= 0 &&
        duet_vocab_load(&tv, duet_model_gguf(tm), &err) < 0) goto fail;

    const char *draft_model = NULL;
    if (a.draft) {
        a.spec.use_ngram = !strcmp(a.draft, "ngram") || strstr(a.draft, "+ngram") != NULL;
        a.spec.use_model = strcmp(a.draft, "ngram") != 0;
        static char path[4096];
        snprintf(path, sizeof path, "%s", a.draft);
        char *plus = strstr(path, "+ngram");
        if (plus) *plus = 0;
        if (a.spec.use_model) draft_model = path;
        if (a.sp.repeat_penalty != 1 || a.sp.freq_penalty != 0 || a.sp.presence_penalty != 0) {
            fprintf(stderr, "duet generate: penalties are not supported with --draft (they make each position's "
                            "distribution depend on unverified tokens)\n");
            status = 2;
            goto done;
        }
    }
    if (draft_model) {
        duet_model_params dp = mp;
        dp.pool = duet_model_pool(tm); /* one pool: the models never run at the same time */
        if (duet_model_load(&dm, draft_model, &dp, &err) < 0) goto fail;
        if (tv && duet_gguf_find_key(duet_model_gguf(dm), "tokenizer.ggml.model") >= 0 &&
            duet_vocab_load(&dv, duet_model_gguf(dm), &err) < 0) goto fail;
        char why[256];
        if (tv && dv && !vocab_compatible(tv, dv, why, sizeof why)) {
            fprintf(stderr, "duet generate: draft and target vocabularies differ: %s\n", why);
            goto done;
        }
        if (duet_model_n_vocab(dm) > duet_model_n_vocab(tm)) {
            fprintf(stderr, "duet generate: the draft model's vocabulary (%d) is larger than the target's (%d)\n",
                    duet_model_n_vocab(dm), duet_model_n_vocab(tm));
            goto done;
        }
    }

    int n_prompt = prompt_ids(&a, tv, duet_model_n_vocab(tm), &prompt);
    if (n_prompt < 0) goto done;
    if (duet_seq_new(&ts, tm, a.ctx, &err) < 0) goto fail;
    if (dm && duet_seq_new(&ds, dm, a.ctx > 0 ? a.ctx : duet_seq_n_ctx(ts), &err) < 0) goto fail;
    if (n_prompt > duet_seq_n_ctx(ts)) {
        fprintf(stderr, "duet generate: the prompt has %d tokens but the context holds %d (use --ctx)\n", n_prompt,
                duet_seq_n_ctx(ts));
        goto done;
    }
    smp = duet_sampler_new(&a.sp, duet_model_n_vocab(tm));
    if (!smp) {
        fprintf(stderr, "duet generate: invalid sampling parameters (top-p must be in (0, 1], min-p <= 1, "
                        "repeat penalty > 0)\n");
        status = 2;
        goto done;
    }

    k.vocab = tv;
    k.json = a.json;
    k.ignore_eos = a.ignore_eos;
    k.cap = a.n_new;
    k.ids = malloc(sizeof *k.ids * (size_t)(a.n_new + 1));
    if (tv && !(k.detok = duet_detok_stream_new(tv, 0))) goto oom;
    if (!k.ids) goto oom;

    duet_lm tl = duet_lm_from_seq(ts), dl;
    duet_spec_stats ss;
    duet_gen_stats gs;
    int spec = a.draft != NULL;
    if (spec) {
        if (ds) dl = duet_lm_from_seq(ds);
        rc = duet_speculative_generate(&tl, ds ? &dl : NULL, smp, &a.spec, prompt, n_prompt, a.n_new, on_token, &k,
                                       &ss, &err);
    } else {
        rc = duet_generate(&tl, smp, prompt, n_prompt, a.n_new, on_token, &k, &gs, &err);
    }
    if (k.detok) {
        size_t n;
        const char *s = duet_detok_stream_flush(k.detok, &n);
        if (s && n) sink_text(&k, s, n);
    }
    if (rc < 0) goto fail;
    if (a.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "text", k.text ? k.text : "");
        cJSON *ids = cJSON_AddArrayToObject(o, "ids");
        for (int i = 0; i < k.n_out; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(k.ids[i]));
        cJSON *st = cJSON_AddObjectToObject(o, "stats");
        print_stats_json(st, &a, spec, &ss, &gs);
        char *js = cJSON_PrintUnformatted(o);
        printf("%s\n", js);
        free(js);
        cJSON_Delete(o);
    } else {
        printf("\n");
        print_stats_line(&a, spec, &ss, &gs);
    }
    status = 0;
    goto done;
oom:
    duet_err_set(&err, DUET_ENOMEM, "out of memory");
fail:
    fprintf(stderr, "duet generate: %s\n", err.msg);
done:
    free(prompt);
    free(k.ids);
    free(k.text);
    duet_detok_stream_free(k.detok);
    duet_sampler_free(smp);
    duet_seq_free(ds);
    duet_seq_free(ts);
    duet_vocab_free(dv);
    duet_vocab_free(tv);
    duet_model_free(dm);
    duet_model_free(tm);
    return status;
}
