/* Kernel dispatch: one merged table per SIMD level (a level's table is the
 * level below overlaid with the entries that level implements), built once. */
#include <pthread.h>

#include "duet/quant.h"
#include "core/vecdot.h"

static duet_kernel_table g_tables[3];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void overlay(duet_kernel_table *dst, const duet_kernel_table *src) {
    for (int t = 0; t < DUET_TYPE_COUNT; t++) {
        if (src->dot[t]) dst->dot[t] = src->dot[t];
        if (src->nxm[t]) dst->nxm[t] = src->nxm[t];
        if (src->act[t]) dst->act[t] = src->act[t];
    }
}

static void init_tables(void) {
    duet_kernel_table lvl = {0};
    duet_kernels_ref_init(&g_tables[DUET_SIMD_SCALAR]);
    g_tables[DUET_SIMD_AVX2] = g_tables[DUET_SIMD_SCALAR];
    g_tables[DUET_SIMD_AVX512] = g_tables[DUET_SIMD_SCALAR];
    const int cpu = duet_cpu_simd_level();
    if (cpu >= DUET_SIMD_AVX2) {
        duet_kernels_avx2_init(&lvl);
        overlay(&g_tables[DUET_SIMD_AVX2], &lvl);
        overlay(&g_tables[DUET_SIMD_AVX512], &lvl);
    }
    if (cpu >= DUET_SIMD_AVX512) {
        duet_kernel_table l5 = {0};
        duet_kernels_avx512_init(&l5);
        overlay(&g_tables[DUET_SIMD_AVX512], &l5);
    }
}

static const duet_kernel_table *table_for(int level) {
    pthread_once(&g_once, init_tables);
    const int cpu = duet_cpu_simd_level();
    if (level > cpu) level = cpu;
    if (level < 0) level = 0;
    return &g_tables[level];
}

static int type_ok(duet_type t) { return (unsigned)t < DUET_TYPE_COUNT; }

duet_vec_dot_fn duet_vec_dot_get_level(duet_type t, int level) {
    return type_ok(t) ? table_for(level)->dot[t] : NULL;
}

duet_vec_dot_nxm_fn duet_vec_dot_nxm_get_level(duet_type t, int level) {
    return type_ok(t) ? table_for(level)->nxm[t] : NULL;
}

duet_quantize_fn duet_quantize_act_get_level(duet_type dt, int level) {
    return type_ok(dt) ? table_for(level)->act[dt] : NULL;
}

duet_vec_dot_fn duet_vec_dot_get(duet_type t) { return duet_vec_dot_get_level(t, duet_simd_level()); }

duet_vec_dot_nxm_fn duet_vec_dot_nxm_get(duet_type t) {
    return duet_vec_dot_nxm_get_level(t, duet_simd_level());
}

duet_quantize_fn duet_quantize_act_get(duet_type dt) {
    return duet_quantize_act_get_level(dt, duet_simd_level());
}

float duet_vec_dot(duet_type t, int64_t n, const void *w, const void *x) {
    const duet_vec_dot_fn f = duet_vec_dot_get(t);
    return f ? f(n, w, x) : 0.0f;
}

void duet_quantize_act_row(duet_type dt, const float *src, void *dst, int64_t n) {
    const duet_quantize_fn f = duet_quantize_act_get(dt);
    if (f) f(src, dst, n);
}
