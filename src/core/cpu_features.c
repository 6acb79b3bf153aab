/* Run-time CPU feature detection (cpuid + xgetbv) and the DUET_SIMD cap. */
#include <cpuid.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "duet/quant.h"
#include "core/vecdot.h"

static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static int detect_level(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return DUET_SIMD_SCALAR;
    const int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    const int avx = (c >> 28) & 1;
    if (!osxsave || !avx) return DUET_SIMD_SCALAR;
    const uint64_t xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) return DUET_SIMD_SCALAR; /* OS saves XMM+YMM */
    if (__get_cpuid_max(0, NULL) < 7) return DUET_SIMD_SCALAR;
    __cpuid_count(7, 0, a, b, c, d);
    const int avx2 = (b >> 5) & 1, bmi2 = (b >> 8) & 1;
    const int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1;
    const int avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    const int vnni = (c >> 11) & 1;
    const unsigned max_sub = a;
    int bf16 = 0;
    if (max_sub >= 1) {
        unsigned a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        bf16 = (a1 >> 5) & 1;
    }
    if (!(avx2 && fma && f16c && bmi2)) return DUET_SIMD_SCALAR;
    const int zmm_state = (xcr0 & 0xe6) == 0xe6; /* opmask + ZMM upper halves */
    if (zmm_state && avx512f && avx512dq && avx512bw && avx512vl && vnni && bf16)
        return DUET_SIMD_AVX512;
    return DUET_SIMD_AVX2;
}

static int g_cpu_level, g_level;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void init_levels(void) {
    g_cpu_level = detect_level();
    g_level = g_cpu_level;
    const char *env = getenv("DUET_SIMD");
    if (env) {
        int cap = g_level;
        if (!strcmp(env, "scalar")) cap = DUET_SIMD_SCALAR;
        else if (!strcmp(env, "avx2")) cap = DUET_SIMD_AVX2;
        else if (!strcmp(env, "avx512")) cap = DUET_SIMD_AVX512;
        if (cap < g_level) g_level = cap;
    }
}

int duet_cpu_simd_level(void) {
    pthread_once(&g_once, init_levels);
    return g_cpu_level;
}

int duet_simd_level(void) {
    pthread_once(&g_once, init_levels);
    return g_level;
}
