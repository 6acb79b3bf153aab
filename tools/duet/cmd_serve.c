/* duet serve: the OpenAI-compatible server (src/server/). Runs until SIGINT
 * or SIGTERM, then finishes what it can and exits 0. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "opts.h"
#include "server/openai.h"
#include "server/server.h"

static const char usage_head[] =
    "usage: duet serve -m LLM [--draft SLM] [--host 127.0.0.1] [--port 8080] [-t N] [--slots 4] [--ctx N]\n"
    "       duet serve --config duet.json\n"
    "  An OpenAI-compatible API (/v1/completions, /v1/chat/completions, /v1/models), /tokenize,\n"
    "  /detokenize, /health, /metrics, and the playground at /. The `model` field of a request picks\n"
    "  a profile: llm, slm, duet-spec (speculative with the draft), duet-spec-k<N> (fixed draft\n"
    "  length N), duet-spec-ngram; a config file names its own (docs/server.md).\n";

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

int cmd_serve(int argc, char **argv) {
    const char *model = NULL, *draft = NULL, *config = NULL, *host = NULL, *api_key = NULL;
    int port = -1, threads = duet_cli_default_threads(), slots = -1, ctx = -1, queue = -1, body_kb = -1;
    double time_limit = -1, forward_delay_ms = -1;
    const duet_opt opts[] = {
        DUET_OPT_STR("model", 'm', &model, "LLM", "the large model (profile llm)"),
        DUET_OPT_STR("draft", 0, &draft, "SLM", "the small model: profile slm, and duet-spec drafts with it"),
        DUET_OPT_STR("config", 0, &config, "FILE", "models and profiles from a JSON file (docs/server.md)"),
        DUET_OPT_STR("host", 0, &host, "ADDR", "IPv4 address to bind (default 127.0.0.1: this machine only)"),
        DUET_OPT_INT("port", 0, &port, 0, 65535, "PORT", "TCP port, 0 = any free one (default 8080)"),
        DUET_OPT_THREADS(&threads),
        DUET_OPT_INT("slots", 0, &slots, 1, 256, "N", "requests decoded at once (default 4)"),
        DUET_OPT_INT("ctx", 'c', &ctx, 0, 1 << 20, "N", "context per slot (default: the model's trained context)"),
        DUET_OPT_INT("queue", 0, &queue, 1, 1 << 16, "N", "requests waiting for a slot before 503 (default 64)"),
        DUET_OPT_STR("api-key", 0, &api_key, "KEY", "require 'Authorization: Bearer KEY' (default: none)"),
        DUET_OPT_DOUBLE("time-limit", 0, &time_limit, 0.001, 86400, "S", "seconds one request may run (default 600)"),
        DUET_OPT_DOUBLE("forward-delay-ms", 0, &forward_delay_ms, 0, 60000, "MS",
                        "bench option: every forward pass lasts at least MS (a large model on a busy server)"),
        DUET_OPT_INT("body-limit", 0, &body_kb, 1, 1 << 20, "KIB", "largest request body in KiB (default 1024)"),
        DUET_OPT_END,
    };
    int rc = duet_opts_parse("serve", opts, argc, argv, usage_head);
    if (rc) return rc == 1 ? 0 : rc;
    if (!config == !model) return duet_opts_error("serve", "need -m MODEL or --config FILE (not both)");
    if (config && draft) return duet_opts_error("serve", "--draft goes in the config file with --config");

    static srv_config cfg;
    srv_config_defaults(&cfg);
    duet_err err = {0};
    if (config ? srv_config_load_json(&cfg, config, &err) < 0 : srv_config_simple(&cfg, model, draft, &err) < 0) {
        fprintf(stderr, "duet serve: %s\n", err.msg);
        return config ? 2 : 1;
    }
    /* flags given beside a config file override it */
    if (host && strlen(host) < sizeof cfg.host) snprintf(cfg.host, sizeof cfg.host, "%s", host);
    if (port >= 0) cfg.port = port;
    if (slots > 0) cfg.slots = slots;
    if (ctx >= 0) cfg.ctx = ctx;
    if (queue > 0) cfg.queue = queue;
    if (time_limit > 0) cfg.time_limit_s = time_limit;
    if (forward_delay_ms >= 0) cfg.forward_delay_s = forward_delay_ms / 1000;
    if (body_kb > 0) cfg.body_limit = (size_t)body_kb * 1024;
    if (api_key) snprintf(cfg.api_key, sizeof cfg.api_key, "%s", api_key);
    if (!cfg.threads || threads != duet_cli_default_threads()) cfg.threads = threads;

    if (srv_config_load_models(&cfg, &err) < 0) {
        fprintf(stderr, "duet serve: %s\n", err.msg);
        srv_config_free(&cfg);
        return 1;
    }
    srv_server *srv;
    int bound = 0;
    if (srv_server_start(&srv, &cfg, &bound, &err) < 0) {
        fprintf(stderr, "duet serve: %s\n", err.msg);
        srv_config_free(&cfg);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    char list[1024];
    srv_profile_list(&cfg, list, sizeof list);
    fprintf(stderr, "duet serve: %d slots x context %d, KV cache %.1f MiB in all, %d threads; profiles: %s\n", cfg.slots,
            srv_profile_ctx(&cfg, &cfg.profiles[0]), srv_server_kv_bytes(srv) / 1048576.0, cfg.threads, list);
    if (strcmp(cfg.host, "127.0.0.1") && strcmp(cfg.host, "localhost"))
        fprintf(stderr, "duet serve: warning: listening on %s, reachable from other machines%s\n", cfg.host,
                cfg.api_key[0] ? "" : " without an API key");
    fprintf(stderr, "duet serve: listening on http://%s:%d (playground: http://%s:%d/)\n", cfg.host, bound, cfg.host, bound);
    fflush(stderr);
    while (!stop_flag) pause();
    fprintf(stderr, "duet serve: stopping\n");
    srv_server_stop(srv);
    srv_config_free(&cfg);
    return 0;
}
