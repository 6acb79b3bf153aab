/* ns per vec_dot of one row (default 4096 elements) for every weight type at
 * every SIMD level this CPU has, plus the activation quantizers and the
 * 4x4 tile (ns per dot). Usage: bench_quant [n] [--json] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/vecdot.h"
#include "duet/quant.h"

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static volatile float g_sink;

int main(int argc, char **argv) {
    int64_t n = 4096;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else n = atoll(argv[i]);
    }
    if (n <= 0 || n % 256) {
        fprintf(stderr, "bench_quant: n must be a positive multiple of 256\n");
        return 2;
    }
    const duet_type types[] = {DUET_TYPE_F32,  DUET_TYPE_F16,  DUET_TYPE_BF16, DUET_TYPE_Q8_0,
                               DUET_TYPE_Q4_0, DUET_TYPE_Q4_1, DUET_TYPE_Q5_0, DUET_TYPE_Q5_1,
                               DUET_TYPE_Q4_K, DUET_TYPE_Q5_K, DUET_TYPE_Q6_K};
    const int nt = sizeof types / sizeof types[0];
    const int max_level = duet_cpu_simd_level();
    float *w = malloc(n * 4 * sizeof(float)), *x = malloc(n * 4 * sizeof(float));
    unsigned s = 1;
    for (int64_t i = 0; i < 4 * n; i++) {
        s = s * 1103515245u + 12345u;
        w[i] = (float)((s >> 8) & 0xffff) / 65536.0f - 0.5f;
        x[i] = (float)((s >> 4) & 0xffff) / 65536.0f - 0.4f;
    }
    void *wq = malloc(n * 4 * 4), *xq = malloc(n * 4 * 4 + 4096);
    if (json) printf("{\"n\": %ld, \"ns_per_dot\": {", (long)n);
    else printf("%-6s %10s %10s %10s %12s %12s\n", "type", "scalar", "avx2", "avx512", "tile4x4/dot", "act_quant");
    for (int ti = 0; ti < nt; ti++) {
        const duet_type t = types[ti], dt = duet_type_info(t)->dot_type;
        const size_t rw = duet_row_size(t, n), rx = duet_row_size(dt, n);
        for (int r = 0; r < 4; r++) {
            duet_quantize_row(t, w + r * n, (char *)wq + r * rw, n);
            duet_quantize_act_row_ref(dt, x + r * n, (char *)xq + r * rx, n);
        }
        double ns[3] = {0, 0, 0};
        for (int l = 0; l <= max_level; l++) {
            const duet_vec_dot_fn f = duet_vec_dot_get_level(t, l);
            const int reps = l == 0 ? 200 : 4000;
            float acc = 0;
            for (int i = 0; i < reps / 10; i++) acc += f(n, wq, xq); /* warm up */
            const double t0 = now_ns();
            for (int i = 0; i < reps; i++) acc += f(n, wq, xq);
            ns[l] = (now_ns() - t0) / reps;
            g_sink = acc;
        }
        const duet_vec_dot_nxm_fn tile = duet_vec_dot_nxm_get_level(t, max_level);
        float out[16];
        const double t1 = now_ns();
        for (int i = 0; i < 500; i++) tile(n, out, 4, wq, rw, xq, rx, 4, 4);
        const double tile_ns = (now_ns() - t1) / 500 / 16;
        g_sink = out[5];
        const duet_quantize_fn q = duet_quantize_act_get_level(dt, max_level);
        const double t2 = now_ns();
        for (int i = 0; i < 500; i++) q(x, xq, n);
        const double act_ns = (now_ns() - t2) / 500;
        if (json)
            printf("%s\"%s\": {\"scalar\": %.1f, \"avx2\": %.1f, \"avx512\": %.1f, \"tile4x4_per_dot\": %.1f, "
                   "\"act_quant_%s\": %.1f}",
                   ti ? ", " : "", duet_type_name(t), ns[0], ns[1], ns[2], tile_ns, duet_type_name(dt), act_ns);
        else
            printf("%-6s %10.1f %10.1f %10.1f %12.1f %8.1f (%s)\n", duet_type_name(t), ns[0], ns[1], ns[2],
                   tile_ns, act_ns, duet_type_name(dt));
    }
    if (json) printf("}, \"cpu_level\": %d}\n", max_level);
    free(w), free(x), free(wq), free(xq);
    return 0;
}
