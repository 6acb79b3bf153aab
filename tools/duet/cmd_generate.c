/* duet generate: one request through a strategy (plain, or speculative with
 * --draft; route, cascade or defer with --strategy and --slm), run by the
 * strategy driver, streamed as text. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "duet/lm_local.h"
#include "duet/model.h"
#include "duet/sample.h"
#include "duet/strategy.h"
#include "duet/tok.h"
#include "fuse_cli.h"
#include "opts.h"
#include "pipeline_cli.h"
#include "policy_cli.h"
#include "remote_cli.h"

static const char usage_head[] =
    "usage: duet generate -m MODEL (-p TEXT | -p - | -f FILE | --tokens \"ID ...\") [-n N] [options]\n"
    "  Plain generation, or speculative decoding with --draft (the SLM or n-grams draft, the\n"
    "  model verifies: greedy output is identical, sampled output follows the model exactly).\n"
    "  One stats line goes to stderr (with the finish reason: stop, length); --json prints one\n"
    "  object instead. A generation that fills the context ends with finish reason 'length'.\n"
    "  --strategy route|cascade|defer --slm SLM: the small model and -m's model collaborate: route\n"
    "  (the SLM's signals over the prompt decide which one answers: --router FILE from duet route-fit,\n"
    "  or --threshold T on minus the SLM's top-1 probability), cascade (the SLM answers; the model answers instead when\n"
    "  the SLM's mean token log-probability is below --threshold T), defer (the model supplies each\n"
    "  token where the SLM's top probability is below --eta E). With --draft the model's leg of route\n"
    "  and cascade is speculative.\n"
    "  --strategy mix|poe|cd|proxy --slm SLM: fusion, every token sampled from a combination of the\n"
    "  models' next-token distributions: mix (w p_LLM + (1-w) p_SLM, --weight w), poe (product of\n"
    "  experts, --weight w), cd (contrastive decoding, log p_LLM - log p_SLM over the tokens with\n"
    "  p_LLM >= --alpha x max; --beta), proxy (proxy-tuning: LLM + TUNED - SLM, --slm-tuned TUNED).\n";

typedef struct {
    duet_vocab *vocab;        /* NULL: print ids */
    duet_detok_stream *detok;
    int json, n_out;
    double t_run, t_first;    /* when the run started, when its first token came (monotonic seconds) */
    int32_t *ids;             /* (cap) generated ids, for --json */
    int cap;
    char *text;               /* generated text, for --json */
    size_t text_len, text_cap;
    pipeline_cli *pipe;       /* --pipeline redact: the answer is restored on its way out */
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

/* The answer's text on its way out: placeholders restored (--pipeline redact). */
static void sink_answer(sink *k, const char *s, size_t n) {
    if (k->pipe) pipeline_cli_restore(k->pipe, &s, &n);
    if (n) sink_text(k, s, n);
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Every emitted token: kept for --json; printed unless it ends the text. */
static int on_token(void *user, const duet_token_out *t) {
    sink *k = user;
    if (k->n_out == 0) k->t_first = mono_s(); /* what the user waits for, whatever the strategy */
    if (k->n_out < k->cap) k->ids[k->n_out++] = t->id;
    if (k->vocab && duet_vocab_is_eog(k->vocab, t->id)) return 0; /* the strategy stops on it (stop_ids) */
    if (k->vocab) {
        size_t n;
        const char *s = duet_detok_stream_push(k->detok, t->id, &n);
        if (s && n) sink_answer(k, s, n);
    } else {
        char buf[24];
        int n = snprintf(buf, sizeof buf, "%s%" PRId32, k->n_out > 1 ? " " : "", t->id);
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

/* Reads a whole stream (the prompt from a file or stdin); NULL on error. */
static char *read_all(FILE *f) {
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    while (buf) {
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) break;
        if (len + 1 == cap) {
            char *t = realloc(buf, cap *= 2);
            if (!t) { free(buf); return NULL; }
            buf = t;
        }
    }
    if (buf && ferror(f)) { free(buf); return NULL; }
    if (buf) buf[len] = 0;
    return buf;
}

/* A seed nobody else gets: the kernel's entropy pool (the clock in whole
 * seconds made a loop of runs repeat its "random" samples). */
static uint64_t fresh_seed(void) {
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    }
    /* 53 bits: the seed printed in --json (a JSON number, a double) is the
     * exact seed, so `-s` with it repeats the run */
    return s & ((1ull << 53) - 1);
}

typedef struct {
    const char *model, *prompt, *file, *tokens, *draft, *chat_template;
    int n_new, threads, ctx, chat, stats, json, ignore_eos, seed_set, spec_mode, kv;
    const char *slm, *router; /* --strategy route|cascade|defer */
    int strategy, threshold_set;
    float eta, threshold;
    char *prompt_owned; /* -f FILE or -p - */
    duet_sampler_params sp;
    duet_spec_params spec;
    fuse_cli fz;        /* --strategy mix|poe|cd|proxy */
    int fuse_rule;      /* -1: no fusion */
    remote_cli remote;  /* --remote: the LLM behind an OpenAI-compatible endpoint, -m the local fallback */
    pipeline_cli pipe;  /* --pipeline redact,compress: stages on the prompt before it leaves, restore after */
    policy_cli pol;     /* --policy: with --remote and --draft, draft or let the remote generate alone */
} gen_args;

/* a number, inf or -inf (-inf: never escalate/route, inf: always) */
static int parse_threshold(const char *v, void *dest) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno == ERANGE || x != x) return -1;
    *(float *)dest = (float)x;
    return 0;
}

enum { GEN_PLAIN, GEN_ROUTE, GEN_CASCADE, GEN_DEFER, GEN_MIX, GEN_POE, GEN_CD, GEN_PROXY };

static int parse_args(int argc, char **argv, gen_args *a) {
    memset(a, 0, sizeof *a);
    a->n_new = 128;
    a->threads = duet_cli_default_threads();
    a->sp = duet_sampler_default_params();
    a->spec = duet_spec_default_params();
    a->spec_mode = 1;
    a->eta = 0.5f;
    static const char *const strategies[] = {"plain", "route", "cascade", "defer", "mix", "poe", "cd", "proxy", NULL};
    fuse_cli_init(&a->fz);
    static const char *const kv_types[] = {"f16", "f32", NULL};
    static const char *const spec_modes[] = {"fixed", "adaptive", NULL};
    static const char *const policies[] = {"auto", "spec", "remote", NULL};
    const duet_opt opts[] = {
        DUET_OPT_STR("model", 'm', &a->model, "PATH", "the GGUF model (the target with --draft)"),
        DUET_OPT_STR("prompt", 'p', &a->prompt, "TEXT", "the prompt; '-' reads it from stdin"),
        DUET_OPT_STR("file", 'f', &a->file, "FILE", "read the prompt from a file"),
        DUET_OPT_STR("tokens", 0, &a->tokens, "\"ID ...\"", "the prompt as token ids"),
        DUET_OPT_INT("n-predict", 'n', &a->n_new, 0, 1 << 24, "N", "new tokens at most (default 128)"),
        DUET_OPT_FLAG("chat", 0, &a->chat, "treat the prompt as a user message and apply the model's chat template"),
        DUET_OPT_STR("chat-template", 0, &a->chat_template, "NAME",
                     "override the template (chatml, llama2, llama3, mistral, zephyr, phi3, gemma)"),
        DUET_OPT_FLOAT("temp", 0, &a->sp.temp, 0, 100, "T", "temperature, 0 = greedy (default 0.8)"),
        DUET_OPT_INT("top-k", 0, &a->sp.top_k, 0, 1 << 30, "K", "keep the K most likely tokens, 0 = off (default 40)"),
        DUET_OPT_FLOAT_GT("top-p", 0, &a->sp.top_p, 0, 1, "P", "nucleus filter in (0, 1], 1 = off (default 0.95)"),
        DUET_OPT_FLOAT("min-p", 0, &a->sp.min_p, 0, 1, "P", "drop tokens below P x the top probability (default 0.05)"),
        DUET_OPT_FLOAT_GT("repeat-penalty", 0, &a->sp.repeat_penalty, 0, 100, "R", "repeat penalty, 1 = off"),
        DUET_OPT_FLOAT("freq-penalty", 0, &a->sp.freq_penalty, -100, 100, "F", "frequency penalty, 0 = off"),
        DUET_OPT_FLOAT("presence-penalty", 0, &a->sp.presence_penalty, -100, 100, "P", "presence penalty, 0 = off"),
        DUET_OPT_INT("penalty-last-n", 0, &a->sp.penalty_last_n, -1, 1 << 24, "N",
                     "history the penalties look at, -1 = all (default 64)"),
        {.name = "seed", .short_name = 's', .type = DUET_OPTT_U64, .dest = &a->sp.seed, .given = &a->seed_set,
         .arg = "S", .help = "RNG seed (default: a fresh one from the system, printed in the stats)"},
        DUET_OPT_THREADS(&a->threads),
        DUET_OPT_INT("ctx", 'c', &a->ctx, 0, 1 << 24, "N", "context length (default: the model's trained context)"),
        DUET_OPT_CHOICE("kv-type", 0, &a->kv, kv_types, "KV cache type: f16 (default) or f32"),
        DUET_OPT_FLAG("ignore-eos", 0, &a->ignore_eos, "do not stop at end-of-generation tokens"),
        DUET_OPT_STR("draft", 0, &a->draft, "SLM|ngram|SLM+ngram",
                     "speculative decoding: draft with a small model, n-grams of the text, or both"),
        DUET_OPT_INT("draft-max", 0, &a->spec.draft_max, 0, DUET_SPEC_KMAX, "K", "longest draft (default 8)"),
        DUET_OPT_INT("draft-min", 0, &a->spec.draft_min, 0, DUET_SPEC_KMAX, "K",
                     "the draft does not stop early before K tokens (default 0)"),
        DUET_OPT_FLOAT("draft-p-min", 0, &a->spec.draft_p_min, 0, 1, "P",
                       "stop drafting below this draft confidence (default 0)"),
        DUET_OPT_CHOICE("spec", 0, &a->spec_mode, spec_modes,
                        "fixed length, or adaptive: the length maximising expected tokens/s (default)"),
        DUET_OPT_FLAG("stats", 0, &a->stats, "also the acceptance per draft position"),
        DUET_OPT_CHOICE("strategy", 0, &a->strategy, strategies,
                        "plain (default: speculative with --draft), route, cascade, defer, or the fusion rules "
                        "mix, poe, cd, proxy (need --slm)"),
        DUET_OPT_STR("slm", 0, &a->slm, "SLM", "the small model of route, cascade, defer and fusion (proxy: the base SLM)"),
        FUSE_CLI_OPTS(&a->fz),
        DUET_OPT_STR("router", 0, &a->router, "FILE", "route: a router written by duet route-fit"),
        {.name = "threshold", .type = DUET_OPTT_CUSTOM, .dest = &a->threshold, .parse = parse_threshold,
         .given = &a->threshold_set, .arg = "a number, inf or -inf",
         .help = "route: to the model when the SLM's mean entropy (or the router's score) > T; "
                 "cascade: escalate when the SLM's mean token log-probability < T"},
        DUET_OPT_FLOAT("eta", 0, &a->eta, -1, 2, "E", "defer: the model supplies tokens where the SLM's top "
                                                      "probability < E (default 0.5)"),
        DUET_OPT_FLAG("json", 0, &a->json, "print one JSON object (text, ids, stats) instead of streaming"),
        DUET_OPT_STR("remote", 0, &a->remote.url, "URL",
                     "the LLM behind an OpenAI-compatible endpoint: its own streamed generation (the LLM leg of route "
                     "and cascade), or verifying --draft's drafts (greedy); -m's model answers if it fails"),
        DUET_OPT_STR("remote-model", 0, &a->remote.model, "NAME", "the endpoint's model (default llm)"),
        DUET_OPT_STR("api-key-env", 0, &a->remote.key_env, "VAR", "read the endpoint's API key from this variable"),
        DUET_OPT_DOUBLE("remote-timeout", 0, &a->remote.timeout_s, 0.01, 3600, "S", "seconds per remote call (default 30)"),
        DUET_OPT_STR("egress-log", 0, &a->remote.egress_log, "FILE", "append every request body sent to the endpoint"),
        DUET_OPT_FLAG("private", 0, &a->remote.private_mode, "never contact the endpoint: the local model answers"),
        PIPELINE_CLI_OPTS(&a->pipe),
        DUET_OPT_CHOICE("policy", 0, &a->pol.policy, policies,
                        "with --remote and --draft: auto (default: measure the round trip, the LLM's pass time and "
                        "the draft's agreement, then draft only where it is predicted faster), spec (always draft), "
                        "remote (the endpoint generates alone)"),
        DUET_OPT_END,
    };
    int rc = duet_opts_parse("generate", opts, argc, argv, usage_head);
    if (rc) return rc;
    if (!a->model) return duet_opts_error("generate", "need -m MODEL (duet generate --help)");
    if ((a->prompt != NULL) + (a->file != NULL) + (a->tokens != NULL) != 1)
        return duet_opts_error("generate", "need exactly one of -p TEXT, -f FILE or --tokens IDS");
    if (a->chat_template) a->chat = 1;
    if ((rc = pipeline_cli_check("generate", &a->pipe, a->tokens != NULL))) return rc;
    if (a->remote.url && ((a->strategy != GEN_PLAIN && a->strategy != GEN_ROUTE && a->strategy != GEN_CASCADE) ||
                          (a->draft && !strcmp(a->draft, "ngram"))))
        return duet_opts_error("generate", "--remote takes plain generation, --strategy route or cascade, or --draft "
                                           "SLM (remote verification)");
    if (a->remote.url && a->draft && a->sp.temp > 0 && !a->remote.private_mode)
        return duet_opts_error("generate", "remote verification (--remote with --draft) is exact for greedy decoding "
                                           "only: add --temp 0");
    /* route and cascade with --remote: -m's model is the SLM unless --slm names another */
    if (a->remote.url && (a->strategy == GEN_ROUTE || a->strategy == GEN_CASCADE) && !a->slm) a->slm = a->model;
    if (a->pol.policy != POLICY_AUTO && !(a->remote.url && a->draft))
        return duet_opts_error("generate", "--policy needs --remote URL and --draft SLM");
    if (!a->remote.url && (a->remote.model || a->remote.key_env || a->remote.egress_log || a->remote.private_mode))
        return duet_opts_error("generate", "--remote-model, --api-key-env, --egress-log and --private need --remote URL");
    if (a->strategy != GEN_PLAIN && !a->slm)
        return duet_opts_error("generate", "--strategy %s needs --slm SLM", strategies[a->strategy]);
    if (a->strategy == GEN_PLAIN && (a->slm || a->router || a->threshold_set))
        return duet_opts_error("generate", "--slm, --router and --threshold need --strategy route, cascade or defer");
    if (a->strategy == GEN_DEFER && a->draft) return duet_opts_error("generate", "--strategy defer takes no --draft");
    if (a->strategy == GEN_ROUTE && !a->router && !a->threshold_set)
        return duet_opts_error("generate", "--strategy route needs --router FILE or --threshold T");
    if (a->strategy == GEN_CASCADE && !a->threshold_set)
        return duet_opts_error("generate", "--strategy cascade needs --threshold T");
    if (a->router && a->strategy != GEN_ROUTE) return duet_opts_error("generate", "--router is for --strategy route");
    a->fuse_rule = a->strategy >= GEN_MIX ? a->strategy - GEN_MIX : -1;
    a->fz.slm = a->slm;
    if ((rc = fuse_cli_check("generate", &a->fz, a->fuse_rule))) return rc;
    if (a->fuse_rule >= 0 && a->draft)
        return duet_opts_error("generate", "--strategy %s takes no --draft", strategies[a->strategy]);
    if (!a->seed_set) a->sp.seed = fresh_seed();
    a->spec.adaptive = a->spec_mode == 1;
    if (a->file || (a->prompt && !strcmp(a->prompt, "-"))) {
        FILE *f = a->file ? fopen(a->file, "rb") : stdin;
        if (!f) return duet_opts_error("generate", "cannot open the prompt file '%s': %s", a->file, strerror(errno));
        a->prompt_owned = read_all(f);
        if (a->file) fclose(f);
        if (!a->prompt_owned) return duet_opts_error("generate", "cannot read the prompt from %s", a->file ? a->file : "stdin");
        a->prompt = a->prompt_owned;
    }
    return 0;
}

/* The prompt as token ids: --tokens as given, text tokenized (after the chat template). */
static int prompt_ids(const gen_args *a, const duet_vocab *vocab, int n_vocab, int32_t **ids) {
    if (a->tokens) {
        int n = parse_ids(a->tokens, ids, n_vocab);
        if (n == -2) fprintf(stderr, "duet generate: --tokens holds an id outside [0, %d)\n", n_vocab);
        else if (n < 0) fprintf(stderr, "duet generate: --tokens must be integers separated by spaces\n");
        else if (n == 0) fprintf(stderr, "duet generate: --tokens is empty\n");
        return n > 0 ? n : -1;
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
    if (n < 0) fprintf(stderr, "duet generate: could not tokenize the prompt (is it valid UTF-8?)\n");
    if (n == 0) fprintf(stderr, "duet generate: the prompt is empty\n");
    return n > 0 ? n : -1;
}

static void print_stats_json(cJSON *o, const gen_args *a, int spec, const duet_stats *ss) {
    const double t_gen = ss->t_total - ss->t_prefill;
    cJSON_AddNumberToObject(o, "seed", (double)a->sp.seed);
    cJSON_AddStringToObject(o, "finish_reason", duet_finish_name(ss->finish));
    cJSON_AddNumberToObject(o, "n_prompt", ss->n_prompt);
    cJSON_AddNumberToObject(o, "n_generated", ss->n_generated);
    cJSON_AddNumberToObject(o, "prefill_s", ss->t_prefill);
    cJSON_AddNumberToObject(o, "decode_s", t_gen);
    cJSON_AddNumberToObject(o, "prefill_tok_s", ss->t_prefill > 0 ? ss->n_prompt / ss->t_prefill : 0);
    cJSON_AddNumberToObject(o, "decode_tok_s", t_gen > 0 ? ss->n_generated / t_gen : 0);
    if (!spec) return;
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
    cJSON_AddNumberToObject(o, "target_tokens", (double)ss->target_tokens);
    cJSON_AddNumberToObject(o, "draft_tokens", (double)ss->draft_tokens);
    cJSON_AddNumberToObject(o, "draft_s", ss->t_draft);
    cJSON_AddNumberToObject(o, "target_s", ss->t_target);
    cJSON_AddNumberToObject(o, "other_s", t_gen - ss->t_draft - ss->t_target);
    cJSON *pos = cJSON_AddArrayToObject(o, "acceptance_by_position");
    for (int i = 0; i < DUET_SPEC_KMAX && ss->drafted_at[i]; i++)
        cJSON_AddItemToArray(pos, cJSON_CreateNumber((double)ss->accepted_at[i] / ss->drafted_at[i]));
    cJSON *by = cJSON_AddObjectToObject(o, "tokens_by_origin");
    for (int i = 0; i < DUET_ORIGIN_COUNT; i++) cJSON_AddNumberToObject(by, duet_origin_name(i), ss->by_origin[i]);
}

static void print_stats_line(const gen_args *a, int spec, const duet_stats *ss) {
    const double t_gen = ss->t_total - ss->t_prefill;
    if (!spec) {
        fprintf(stderr,
                "\n[stats] prompt %d tok, %.1f tok/s | generated %d tok, %.1f tok/s | finish %s | seed %" PRIu64 "\n",
                ss->n_prompt, ss->t_prefill > 0 ? ss->n_prompt / ss->t_prefill : 0, ss->n_generated,
                t_gen > 0 ? ss->n_generated / t_gen : 0, duet_finish_name(ss->finish), a->sp.seed);
        return;
    }
    fprintf(stderr,
            "\n[stats] prompt %d tok | generated %d tok, %.1f tok/s | drafted %d, accepted %d (%.1f%%), "
            "mean accepted length %.2f | target evals %d, draft evals %d | time: draft %.3fs, target %.3fs, "
            "other %.3fs | finish %s | seed %" PRIu64 "\n",
            ss->n_prompt, ss->n_generated, t_gen > 0 ? ss->n_generated / t_gen : 0, ss->drafted, ss->accepted,
            ss->drafted ? 100.0 * ss->accepted / ss->drafted : 0,
            ss->drafted_at[0] ? (double)ss->accepted / ss->drafted_at[0] : 0, ss->target_evals, ss->draft_evals,
            ss->t_draft, ss->t_target, t_gen - ss->t_draft - ss->t_target, duet_finish_name(ss->finish), a->sp.seed);
    if (!a->stats) return;
    fprintf(stderr, "[stats] acceptance by draft position:");
    for (int i = 0; i < DUET_SPEC_KMAX && ss->drafted_at[i]; i++)
        fprintf(stderr, " %d:%.2f", i + 1, (double)ss->accepted_at[i] / ss->drafted_at[i]);
    fprintf(stderr, "\n");
}

static int load_model(duet_model **m, duet_vocab **v, const char *path, const duet_model_params *mp, duet_err *err) {
    int rc = duet_model_load(m, path, mp, err);
    if (rc < 0) return rc;
    if (duet_gguf_find_key(duet_model_gguf(*m), "tokenizer.ggml.model") >= 0) rc = duet_vocab_load(v, duet_model_gguf(*m), err);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    gen_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) {
        free(a.prompt_owned);
        return rc == 1 ? 0 : rc;
    }

    int status = 1;
    duet_err err = {0};
    duet_model *tm = NULL, *dm = NULL;
    duet_lm *tl = NULL, *dl = NULL;
    duet_vocab *tv = NULL, *dv = NULL;
    duet_sampler *smp = NULL;
    duet_strategy *strat = NULL, *remote_leg = NULL, *local_leg = NULL;
    duet_remote *remote = NULL;
    duet_token_source *remote_src = NULL; /* the endpoint's own streamed generation (no --draft, or --policy remote) */
    duet_sampler *lsmp = NULL;            /* the local fallback's sampler under --remote */
    duet_lm *rl = NULL;
    int32_t *prompt = NULL, *stop = NULL;
    sink k = {0};
    /* --strategy route|cascade|defer: the SLM, its leg, the collaborating strategy */
    duet_model *sm = NULL;
    duet_lm *sl = NULL;
    duet_vocab *sv = NULL;
    duet_sampler *ssmp = NULL;
    duet_strategy *sleg = NULL, *collab = NULL;
    duet_router router;
    duet_router_init(&router, DUET_ROUTER_THRESHOLD);
    duet_route_words *words = NULL; /* the SLM's word view (route) */
    /* proxy-tuning: the tuned SLM (the base one is --slm's) */
    duet_model *fm = NULL;
    duet_lm *fl = NULL;

    duet_model_params mp = duet_model_default_params();
    mp.n_threads = a.threads;
    mp.kv_type = a.kv == 1 ? DUET_KV_F32 : DUET_KV_F16;
    if (load_model(&tm, &tv, a.model, &mp, &err) < 0) goto fail;

    const char *draft_model = NULL;
    static char path[4096];
    if (a.draft) {
        a.spec.use_ngram = !strcmp(a.draft, "ngram") || strstr(a.draft, "+ngram") != NULL;
        a.spec.use_model = strcmp(a.draft, "ngram") != 0;
        snprintf(path, sizeof path, "%s", a.draft);
        char *plus = strstr(path, "+ngram");
        if (plus) *plus = 0;
        if (a.spec.use_model) draft_model = path;
    }
    if (draft_model) {
        duet_model_params dp = mp;
        dp.pool = duet_model_pool(tm); /* one pool: the models never run at the same time */
        if (load_model(&dm, tv ? &dv : NULL, draft_model, &dp, &err) < 0) goto fail;
        if (tv && dv && duet_vocab_check_compatible(tv, dv, &err) < 0) {
            fprintf(stderr, "duet generate: draft and target vocabularies differ: %s\n", err.msg);
            goto done;
        }
    }
    if (a.slm) {
        duet_model_params sp = mp;
        sp.pool = duet_model_pool(tm);
        if (load_model(&sm, tv ? &sv : NULL, a.slm, &sp, &err) < 0) goto fail;
        if (tv && sv && duet_vocab_check_compatible(tv, sv, &err) < 0) {
            fprintf(stderr, "duet generate: the SLM's and the model's vocabularies differ: %s\n", err.msg);
            goto done;
        }
    }
    if (a.fuse_rule >= 0) { /* fusion: the rule's models share one vocabulary */
        duet_model_params fp = mp;
        fp.pool = duet_model_pool(tm);
        if (a.fz.slm_tuned && duet_model_load(&fm, a.fz.slm_tuned, &fp, &err) < 0) goto fail;
        const char *paths[FUSE_CLI_MAX];
        duet_model *fms[FUSE_CLI_MAX] = {tm, fm ? fm : sm, sm};
        int nf = fuse_cli_paths(&a.fz, a.model, paths);
        if (fuse_cli_check_vocab(fms, paths, nf, &err) < 0) {
            fprintf(stderr, "duet generate: %s\n", err.msg);
            goto done;
        }
    }

    const int n_train = duet_model_hparams(tm)->n_ctx_train;
    if (a.ctx > n_train && n_train > 0)
        fprintf(stderr, "duet generate: warning: --ctx %d exceeds the context the model was trained for (%d); "
                        "text past %d positions is out of its training\n", a.ctx, n_train, n_train);
    if (pipeline_cli_apply(&a.pipe, tm, tv, &a.prompt, &err) < 0) goto fail; /* before anything leaves */
    int n_prompt = prompt_ids(&a, tv, duet_model_n_vocab(tm), &prompt);
    if (n_prompt < 0) goto done;
    if (duet_lm_local_new(&tl, tm, a.ctx, "llm", &err) < 0) goto fail;
    if (n_prompt > duet_lm_n_ctx(tl)) {
        fprintf(stderr, "duet generate: the prompt has %d tokens but the context holds %d (use --ctx)\n", n_prompt,
                duet_lm_n_ctx(tl));
        goto done;
    }
    if (dm) {
        /* The draft works within its own trained context: past it, its
         * guesses are noise (model cards); the strategy stops drafting there. */
        int dctx = duet_lm_n_ctx(tl), d_train = duet_model_hparams(dm)->n_ctx_train;
        if (d_train > 0 && d_train < dctx) dctx = d_train;
        if (duet_lm_local_new(&dl, dm, dctx, "draft", &err) < 0) goto fail;
    }
    if (duet_sampler_new_checked(&smp, &a.sp, duet_model_n_vocab(tm), &err) < 0) {
        fprintf(stderr, "duet generate: %s\n", err.msg);
        status = 2;
        goto done;
    }
    if (a.remote.url) { /* the remote LLM answers (verifying -draft's drafts); -m's model if it fails */
        if (remote_cli_open(&a.remote, tv, duet_lm_n_ctx(tl), a.draft != NULL, &remote, &rl, &err) < 0) {
            fprintf(stderr, "duet generate: %s\n", err.msg);
            status = 1;
            goto done;
        }
        rc = duet_sampler_new_checked(&lsmp, &a.sp, duet_model_n_vocab(tm), &err);
        if (rc == 0) rc = duet_strategy_plain(&local_leg, tl, lsmp, &err);
        duet_strategy *rleg = NULL; /* --draft: the remote LLM's leg as --policy asks (a.pol owns it) */
        if (rc == 0 && rl && dl)
            rc = policy_cli_build(&a.pol, remote, tv, rl, dl, smp, &a.spec, &rleg, &err);
        else if (rc == 0 && rl)
            rc = a.draft ? duet_strategy_speculative(&remote_leg, rl, dl, smp, &a.spec, &err)
                         : remote_cli_generate_leg(remote, tv, &a.sp, &remote_src, &remote_leg, &err);
        if (!rleg) rleg = remote_leg;
        if (rc == 0) rc = rl ? duet_strategy_fallback(&strat, rleg, local_leg, &err) : 0;
        if (rc == 0 && !rl) strat = local_leg, local_leg = NULL; /* private mode: the local model alone */
    } else {
        rc = a.draft ? duet_strategy_speculative(&strat, tl, dl, smp, &a.spec, &err)
                     : duet_strategy_plain(&strat, tl, smp, &err);
    }
    if (rc == 0 && sm) { /* the SLM collaborates; strat is the model's leg */
        int sctx = duet_lm_n_ctx(tl), s_train = duet_model_hparams(sm)->n_ctx_train;
        if (s_train > 0 && s_train < sctx) sctx = s_train;
        if (duet_lm_local_new(&sl, sm, sctx, "slm", &err) < 0) goto fail;
        if (a.strategy == GEN_DEFER) {
            rc = duet_strategy_defer(&collab, sl, tl, smp, a.eta, &err);
        } else if (a.fuse_rule >= 0) { /* fusion: LLM, SLM (proxy: LLM, tuned, base) */
            duet_lm *lms[FUSE_CLI_MAX] = {tl, sl, sl};
            if (fm && duet_lm_local_new(&fl, fm, duet_lm_n_ctx(sl), "tuned", &err) < 0) goto fail;
            if (fl) lms[1] = fl;
            rc = duet_strategy_fuse(&collab, lms, duet_fuse_n_models(a.fz.par.rule), smp, &a.fz.par, &err);
        } else {
            rc = duet_sampler_new_checked(&ssmp, &a.sp, duet_model_n_vocab(sm), &err);
            if (rc == 0) rc = duet_strategy_plain(&sleg, sl, ssmp, &err);
            if (rc == 0 && a.strategy == GEN_ROUTE) {
                if (a.router) rc = duet_router_load(&router, a.router, &err);
                if (rc == 0 && a.threshold_set) router.threshold = a.threshold;
                const duet_vocab *wv = sv ? sv : tv; /* the SLM's vocabulary (they agree) */
                if (rc == 0 && wv) rc = duet_route_words_new(&words, wv, &err);
                if (rc == 0) rc = duet_strategy_route(&collab, sl, words, sleg, strat, &router, &err);
            } else if (rc == 0) {
                duet_strategy *tiers[2] = {sleg, strat};
                rc = duet_strategy_cascade(&collab, tiers, &a.threshold, 2, 0, &err);
            }
        }
    }
    if (rc < 0) {
        fprintf(stderr, "duet generate: %s\n", err.msg);
        status = rc == DUET_EINVAL ? 2 : 1;
        goto done;
    }

    k.vocab = tv;
    k.json = a.json;
    k.pipe = a.pipe.redact ? &a.pipe : NULL;
    k.cap = a.n_new;
    k.ids = malloc(sizeof *k.ids * (size_t)(a.n_new + 1));
    if (tv && !(k.detok = duet_detok_stream_new(tv, 0))) goto oom;
    int n_stop = 0;
    if (tv && !a.ignore_eos && (n_stop = duet_vocab_eog_ids(tv, &stop)) < 0) goto oom;
    if (!k.ids) goto oom;

    duet_request req = {.prompt = prompt, .n_prompt = n_prompt, .max_new = a.n_new, .stop_ids = stop,
                        .n_stop_ids = n_stop, .emit = on_token, .user = &k};
    duet_strategy *run = collab ? collab : strat;
    k.t_run = mono_s();
    rc = duet_run(run, &req, &err);
    const double run_s = mono_s() - k.t_run;
    /* strat is the fallback under --remote, itself a leg of route or cascade */
    const char *degraded = duet_strategy_fallback_reason(strat);
    if (rc >= 0 && degraded)
        fprintf(stderr, "\nduet generate: degraded: the remote failed (%s); the local model finished the answer\n",
                degraded);
    if (k.detok) {
        size_t n;
        const char *s = duet_detok_stream_flush(k.detok, &n);
        if (s && n) sink_answer(&k, s, n);
    }
    if (k.pipe) { /* a possible placeholder held back at the end */
        const char *s;
        size_t n;
        pipeline_cli_restore_flush(k.pipe, &s, &n);
        if (n) sink_text(&k, s, n);
    }
    if (rc < 0) goto fail;
    duet_stats ss;
    duet_strategy_stats(run, &ss);
    if (a.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "text", k.text ? k.text : "");
        cJSON *ids = cJSON_AddArrayToObject(o, "ids");
        for (int i = 0; i < k.n_out; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(k.ids[i]));
        cJSON_AddStringToObject(o, "finish_reason", duet_finish_name(ss.finish));
        cJSON *st = cJSON_AddObjectToObject(o, "stats");
        /* measured here, the same way for every strategy: from the start of the run */
        cJSON_AddNumberToObject(st, "ttft_s", k.n_out ? k.t_first - k.t_run : 0);
        cJSON_AddNumberToObject(st, "total_s", run_s);
        print_stats_json(st, &a, a.draft != NULL, &ss);
        pipeline_cli_json(st, &a.pipe);
        if (a.remote.url) {
            long calls = 0, fails = 0;
            double secs = 0;
            if (remote) duet_remote_counts(remote, &calls, &fails, NULL, NULL, &secs);
            cJSON_AddBoolToObject(st, "degraded", ss.degraded || degraded != NULL);
            cJSON_AddStringToObject(st, "remote_mode", a.remote.private_mode ? "private"
                                                       : remote_src ? "generate" : "verify");
            cJSON_AddBoolToObject(st, "private", a.remote.private_mode);
            cJSON_AddNumberToObject(st, "remote_calls", (double)calls);
            cJSON_AddNumberToObject(st, "remote_failures", (double)fails);
            cJSON_AddNumberToObject(st, "remote_s", secs);
            if (a.draft && rl) policy_cli_json(st, &a.pol);
        }
        if (collab && a.fuse_rule >= 0) { /* fusion: the rule, its parameters, the models' work */
            cJSON_AddStringToObject(st, "strategy", duet_strategy_name(collab));
            fuse_cli_json(st, &a.fz);
            cJSON_AddNumberToObject(st, "llm_tokens", (double)ss.target_tokens);
            cJSON_AddNumberToObject(st, "other_tokens", (double)ss.draft_tokens);
            cJSON_AddNumberToObject(st, "llm_s", ss.t_target);
            cJSON_AddNumberToObject(st, "other_s", ss.t_draft);
        } else if (collab) { /* who answered */
            cJSON_AddStringToObject(st, "strategy", duet_strategy_name(collab));
            if (a.strategy == GEN_DEFER) cJSON_AddNumberToObject(st, "deferred", ss.deferred);
            else cJSON_AddStringToObject(st, "answered_by", ss.escalated ? "llm" : "slm");
            if (a.strategy != GEN_DEFER) cJSON_AddNumberToObject(st, a.strategy == GEN_ROUTE ? "score" : "confidence",
                                                                 ss.confidence);
            if (!cJSON_GetObjectItem(st, "tokens_by_origin")) {
                cJSON *by = cJSON_AddObjectToObject(st, "tokens_by_origin");
                for (int i = 0; i < DUET_ORIGIN_COUNT; i++)
                    cJSON_AddNumberToObject(by, duet_origin_name(i), ss.by_origin[i]);
            }
        }
        char *js = cJSON_PrintUnformatted(o);
        printf("%s\n", js);
        free(js);
        cJSON_Delete(o);
    } else {
        printf("\n");
        print_stats_line(&a, a.draft != NULL, &ss);
        if (a.draft && rl) policy_cli_print(&a.pol);
        pipeline_cli_print(&a.pipe);
        char desc[96];
        if (collab && a.fuse_rule >= 0) {
            fuse_cli_describe(&a.fz, desc, sizeof desc);
            fprintf(stderr, "[fusion] %s over %d models: %.3f s in the LLM, %.3f s in the others\n", desc,
                    duet_fuse_n_models(a.fz.par.rule), ss.t_target, ss.t_draft);
        } else if (collab && a.strategy == GEN_DEFER)
            fprintf(stderr, "[%s] eta %g: the model supplied %d of %d tokens\n", duet_strategy_name(collab), a.eta,
                    ss.deferred, ss.n_generated);
        else if (collab)
            fprintf(stderr, "[%s] answered by the %s (%s %.4g)\n", duet_strategy_name(collab),
                    ss.escalated ? "model (llm)" : "slm", a.strategy == GEN_ROUTE ? "router score" : "slm confidence",
                    ss.confidence);
    }
    status = 0;
    goto done;
oom:
    duet_err_set(&err, DUET_ENOMEM, "out of memory");
fail:
    fprintf(stderr, "duet generate: %s\n", err.msg);
done:
    free(a.prompt_owned);
    pipeline_cli_free(&a.pipe);
    free(prompt);
    free(stop);
    free(k.ids);
    free(k.text);
    duet_detok_stream_free(k.detok);
    duet_strategy_free(collab);
    duet_strategy_free(sleg);
    duet_strategy_free(strat);
    duet_strategy_free(remote_leg);
    duet_strategy_free(local_leg);
    duet_sampler_free(ssmp);
    duet_sampler_free(lsmp);
    duet_sampler_free(smp);
    duet_router_free(&router);
    duet_route_words_free(words);
    duet_lm_free(fl);
    duet_lm_free(sl);
    duet_lm_free(dl);
    duet_lm_free(tl);
    duet_lm_free(rl);
    duet_remote_source_free(remote_src);
    policy_cli_free(&a.pol);
    duet_remote_free(remote);
    duet_vocab_free(sv);
    duet_vocab_free(dv);
    duet_vocab_free(tv);
    duet_model_free(fm);
    duet_model_free(sm);
    duet_model_free(dm);
    duet_model_free(tm);
    return status;
}
