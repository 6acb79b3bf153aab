/* libFuzzer target: arbitrary bytes as the body of a duet serve request,
 * through srv_parse_request (src/server/openai.c), the function every
 * /v1/completions and /v1/chat/completions body goes through. The first byte
 * picks the endpoint (odd: chat), the rest is the body.
 *
 * The server config is the one `duet serve -m models/llm.gguf --draft
 * models/slm-draft.gguf` builds (profiles llm, slm, duet-spec, duet-spec-ngram,
 * ... and their -k<N> forms), its models loaded once in LLVMFuzzerInitialize.
 * Checked: an accepted request is one the scheduler can run (at least one
 * prompt, every id in the vocabulary, prompt + max_tokens within the
 * profile's context, n x prompts within the choice limit, sampling values in
 * range); a refused one has a 4xx status (or 500 out of memory), a message,
 * and an error object that is valid JSON. Seeds: tests/data/server_requests/
 * (scripts/fuzz.sh). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/openai.h"
#include "server/server.h"

#ifndef DUET_SRC_DIR
#define DUET_SRC_DIR "."
#endif

static srv_config cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *dir = getenv("DUET_MODELS_DIR");
    char llm[2048], draft[2048];
    snprintf(llm, sizeof llm, "%s/llm.gguf", dir ? dir : DUET_SRC_DIR "/models");
    snprintf(draft, sizeof draft, "%s/slm-draft.gguf", dir ? dir : DUET_SRC_DIR "/models");
    srv_config_defaults(&cfg);
    cfg.threads = 1;
    duet_err err = {0};
    if (srv_config_simple(&cfg, llm, draft, &err) < 0 || srv_config_load_models(&cfg, &err) < 0) {
        fprintf(stderr, "fuzz_server_request: %s (set DUET_MODELS_DIR)\n", err.msg);
        abort();
    }
    return 0;
}

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "fuzz_server_request: check failed: %s (line %d)\n", #cond, __LINE__);          \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const int chat = data[0] & 1;
    /* the body in a buffer of its own size (no terminator: ASan sees any read past it) */
    const size_t len = size - 1;
    char *body = malloc(len ? len : 1);
    if (!body) return 0;
    if (len) memcpy(body, data + 1, len);
    srv_req r;
    srv_error e;
    const int rc = srv_parse_request(&cfg, chat, body, len, &r, &e);
    free(body);
    if (rc == 0) {
        const int nv = duet_vocab_n(cfg.models[0].vocab);
        const int ctx = srv_profile_ctx(&cfg, &r.prof);
        CHECK(r.chat == chat);
        CHECK(r.prof_index >= 0 && r.prof_index < cfg.n_profiles);
        CHECK(r.prof.model >= 0 && r.prof.model < cfg.n_models);
        CHECK(r.prof.draft >= -1 && r.prof.draft < cfg.n_models);
        CHECK(r.n_prompts >= 1 && r.n_prompts <= SRV_MAX_CHOICES);
        CHECK(r.n >= 1 && r.n * r.n_prompts <= SRV_MAX_CHOICES);
        CHECK(!chat || r.n_prompts == 1);
        CHECK(r.max_tokens >= 0);
        for (int i = 0; i < r.n_prompts; i++) {
            CHECK(r.prompt[i] && r.n_prompt[i] >= 1);
            CHECK(r.n_prompt[i] + r.max_tokens <= ctx);
            for (int k = 0; k < r.n_prompt[i]; k++) CHECK(r.prompt[i][k] >= 0 && r.prompt[i][k] < nv);
        }
        CHECK(r.n_stop >= 0 && r.n_stop <= SRV_MAX_STOP);
        for (int i = 0; i < r.n_stop; i++) CHECK(r.stop[i] && r.stop[i][0] && strlen(r.stop[i]) <= 256);
        CHECK(r.logprobs >= -1 && r.logprobs <= SRV_MAX_TOP_LOGPROBS);
        CHECK(isfinite(r.sp.temp) && r.sp.temp >= 0 && r.sp.temp <= 2);
        CHECK(r.sp.top_p > 0 && r.sp.top_p <= 1);
        CHECK(r.sp.min_p >= 0 && r.sp.min_p <= 1);
        CHECK(r.sp.top_k >= 0);
        srv_req_free(&r);
    } else {
        CHECK((e.status >= 400 && e.status < 500) || e.status == 500);
        CHECK(e.message[0] != 0);
        CHECK(memchr(e.message, 0, sizeof e.message) && memchr(e.param, 0, sizeof e.param));
        char *js = srv_error_json(&e);
        CHECK(js);
        CHECK(srv_utf8_valid(js, strlen(js))); /* messages quote the client's strings, cut to a length */
        cJSON *o = cJSON_Parse(js);
        CHECK(o && cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(o, "error")));
        cJSON_Delete(o);
        free(js);
    }
    return 0;
}
