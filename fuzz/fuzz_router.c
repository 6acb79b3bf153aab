/* libFuzzer target for the router file reader (duet_router_load,
 * include/duet/strategy.h). On any bytes: the reader refuses them with a
 * message or gives a router whose every coefficient is finite (scales > 0);
 * saving that router and reading it back gives the same router, score for
 * score, bit for bit (%.9g writes every float exactly). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "duet/strategy.h"

static char in_path[64], out_path[64];

static void paths(void) {
    if (in_path[0]) return;
    snprintf(in_path, sizeof in_path, "/tmp/duet_fuzz_router_%ld.in", (long)getpid());
    snprintf(out_path, sizeof out_path, "/tmp/duet_fuzz_router_%ld.out", (long)getpid());
}

static int same_bits(float a, float b) { return !memcmp(&a, &b, sizeof a); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    paths();
    FILE *f = fopen(in_path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    duet_router r, back;
    duet_err err = {0};
    if (duet_router_load(&r, in_path, &err) < 0) {
        if (!err.msg[0]) abort(); /* a refusal says why */
        return 0;
    }
    if (!isfinite(r.b)) abort();
    for (int i = 0; i < DUET_ROUTE_NSIG; i++)
        if (!(r.scale[i] > 0) || !isfinite(r.w[i]) || !isfinite(r.mean[i])) abort();
    for (int i = 0; i < r.n_hidden; i++)
        if (!(r.h_scale[i] > 0) || !isfinite(r.h_w[i]) || !isfinite(r.h_mean[i])) abort();
    if (duet_router_save(&r, out_path, &err) < 0) abort();
    if (duet_router_load(&back, out_path, &err) < 0) abort();
    if (back.kind != r.kind || back.signal != r.signal || back.n_hidden != r.n_hidden) abort();
    float sig[DUET_ROUTE_NSIG];
    float *hid = r.n_hidden ? malloc(sizeof *hid * (size_t)r.n_hidden) : NULL;
    for (int i = 0; i < DUET_ROUTE_NSIG; i++) sig[i] = (float)i * 0.25f - 0.5f;
    for (int i = 0; i < r.n_hidden; i++) hid[i] = (float)(i % 7) * 0.125f;
    const float a = duet_router_score_h(&r, sig, hid), b = duet_router_score_h(&back, sig, hid);
    if (!same_bits(a, b) && !(isnan(a) && isnan(b))) abort();
    if (!same_bits(r.threshold, back.threshold) && !(isnan(r.threshold) && isnan(back.threshold))) abort();
    free(hid);
    duet_router_free(&r), duet_router_free(&back);
    return 0;
}
