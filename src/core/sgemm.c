/* Packed, cache-blocked single-precision GEMM: the shared driver, the packers
 * and the plain C reference micro-kernel. See core/sgemm.h for the scheme.
 *
 * Blocking (per thread): K is cut in KC slices; for each slice an MC-row block
 * of op(A) is packed (it stays in L2/L3) and, for each NC-column block, op(B)
 * is packed into NR-wide panels (L2). The micro-kernel keeps one MR-row panel
 * of A in L1 and streams the B panels past it. */
#include <stdlib.h>
#include <string.h>

#include "core/quant_blocks.h"
#include "core/scratch.h"
#include "core/sgemm.h"
#include "core/vecdot.h"
#include "duet/kernels.h"

#define KC 384
#define MC 960
#define NC_MAX 480
#define MR_MAX 12
#define NR_MAX 32

/* ---- reference micro-kernel (any CPU) ---- */

#define MR_REF 4
#define NR_REF 16

static void ukernel_ref(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                        float alpha, float beta) {
    float acc[MR_REF][NR_REF] = {{0}};
    for (int64_t p = 0; p < kc; p++) {
        const float *bp = b + p * NR_REF;
        for (int i = 0; i < MR_REF; i++) {
            const float ai = a[p * MR_REF + i];
            for (int j = 0; j < NR_REF; j++) acc[i][j] += ai * bp[j];
        }
    }
    for (int i = 0; i < MR_REF; i++) {
        float *ci = c + i * ldc;
        for (int j = 0; j < NR_REF; j++)
            ci[j] = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * ci[j];
    }
}

static duet_sgemm_kernel_desc kernel_for(int level) {
    const int cpu = duet_cpu_simd_level();
    if (level < 0 || level > cpu) level = level < 0 ? duet_simd_level() : cpu;
    if (level >= DUET_SIMD_AVX512)
        return (duet_sgemm_kernel_desc){DUET_SGEMM_MR_AVX512, DUET_SGEMM_NR_AVX512,
                                        duet_sgemm_ukernel_avx512};
    if (level >= DUET_SIMD_AVX2)
        return (duet_sgemm_kernel_desc){DUET_SGEMM_MR_AVX2, DUET_SGEMM_NR_AVX2,
                                        duet_sgemm_ukernel_avx2};
    return (duet_sgemm_kernel_desc){MR_REF, NR_REF, ukernel_ref};
}

/* ---- packing ---- */

/* op(A)[i0 .. i0+mc, p0 .. p0+kc) as panels of mr rows: panel q at
 * dst + q*kc*mr, dst[q*kc*mr + p*mr + i] = op(A)[i0+q*mr+i, p0+p], zero past mc. */
static void pack_a(float *dst, const float *A, int64_t lda, int trans, int64_t i0, int64_t mc,
                   int64_t p0, int64_t kc, int mr) {
    for (int64_t ip = 0; ip < mc; ip += mr) {
        const int rows = (int)(mc - ip < mr ? mc - ip : mr);
        float *d = dst + (ip / mr) * kc * mr;
        if (!trans) {
            for (int i = 0; i < rows; i++) {
                const float *s = A + (i0 + ip + i) * lda + p0;
                for (int64_t p = 0; p < kc; p++) d[p * mr + i] = s[p];
            }
            for (int i = rows; i < mr; i++)
                for (int64_t p = 0; p < kc; p++) d[p * mr + i] = 0.0f;
        } else {
            for (int64_t p = 0; p < kc; p++) {
                const float *s = A + (p0 + p) * lda + i0 + ip;
                float *dp = d + p * mr;
                int i = 0;
                for (; i < rows; i++) dp[i] = s[i];
                for (; i < mr; i++) dp[i] = 0.0f;
            }
        }
    }
}

/* The three B packers differ only in how one element is read. Transposed
 * sources are walked in chunks of PCHUNK rows of the panel so that the
 * strided writes stay within L1. */
#define PCHUNK 64
#define DEFINE_PACK_B(name, T, CONV, SRC)                                                     \
    void name(const duet_sgemm_bsrc *s, float *dst, int64_t p0, int64_t kc, int64_t j0,       \
              int64_t nc, int nr) {                                                           \
        if (s->trans && duet_simd_level() >= DUET_SIMD_AVX512 &&                              \
            duet_sgemm_pack_b_rows_avx512(s, dst, p0, kc, j0, nc, nr, SRC) == 0)              \
            return;                                                                           \
        if (s->trans && duet_simd_level() >= DUET_SIMD_AVX2 &&                                \
            duet_sgemm_pack_b_rows_avx2(s, dst, p0, kc, j0, nc, nr, SRC) == 0)                \
            return;                                                                           \
        const T *B = (const T *)s->b;                                                         \
        const int64_t ldb = s->ldb;                                                           \
        for (int64_t jp = 0; jp < nc; jp += nr) {                                             \
            const int cols = (int)(nc - jp < nr ? nc - jp : nr);                              \
            float *d = dst + (jp / nr) * kc * nr;                                             \
            if (!s->trans) {                                                                  \
                for (int64_t p = 0; p < kc; p++) {                                            \
                    const T *sp = B + (p0 + p) * ldb + j0 + jp;                               \
                    float *dp = d + p * nr;                                                   \
                    int j = 0;                                                                \
                    for (; j < cols; j++) dp[j] = CONV(sp[j]);                                \
                    for (; j < nr; j++) dp[j] = 0.0f;                                         \
                }                                                                             \
            } else {                                                                          \
                for (int64_t pc = 0; pc < kc; pc += PCHUNK) {                                 \
                    const int64_t pe = kc - pc < PCHUNK ? kc : pc + PCHUNK;                   \
                    for (int j = 0; j < cols; j++) {                                          \
                        const T *sp = B + (j0 + jp + j) * ldb + p0;                           \
                        for (int64_t p = pc; p < pe; p++) d[p * nr + j] = CONV(sp[p]);        \
                    }                                                                         \
                    for (int j = cols; j < nr; j++)                                           \
                        for (int64_t p = pc; p < pe; p++) d[p * nr + j] = 0.0f;               \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

#define CONV_F32(v) (v)
DEFINE_PACK_B(duet_sgemm_pack_b_f32, float, CONV_F32, 0)
DEFINE_PACK_B(duet_sgemm_pack_b_f16, uint16_t, duet_fp16_to_fp32_inl, 1)
DEFINE_PACK_B(duet_sgemm_pack_b_bf16, uint16_t, duet_bf16_to_fp32_inl, 2)

/* ---- driver ---- */

typedef struct {
    duet_sgemm_kernel_desc kd;
    int trans_a;
    int64_t M, N, K;
    float alpha, beta;
    const float *A;
    int64_t lda;
    const duet_sgemm_bsrc *bs;
    float *C;
    int64_t ldc;
    int split_n; /* threads split N (else M) */
} sgemm_job;

static void scale_c(float *C, int64_t ldc, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                    float beta) {
    for (int64_t i = m0; i < m1; i++) {
        float *ci = C + i * ldc;
        for (int64_t j = n0; j < n1; j++) ci[j] = beta == 0.0f ? 0.0f : beta * ci[j];
    }
}

/* Used only when a packing buffer cannot be allocated: slow but correct. */
static void sgemm_unpacked(const sgemm_job *jb, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    const duet_sgemm_bsrc *bs = jb->bs;
    float col[NR_MAX];
    for (int64_t j = n0; j < n1; j++) {
        for (int64_t i = m0; i < m1; i++) {
            double acc = 0.0;
            for (int64_t p = 0; p < jb->K; p++) {
                bs->pack(bs, col, p, 1, j, 1, 1);
                const float a = jb->trans_a ? jb->A[p * jb->lda + i] : jb->A[i * jb->lda + p];
                acc += (double)a * col[0];
            }
            float *c = jb->C + i * jb->ldc + j;
            *c = jb->beta == 0.0f ? jb->alpha * (float)acc : jb->alpha * (float)acc + jb->beta * *c;
        }
    }
}

static void sgemm_rect(const sgemm_job *jb, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    if (m0 >= m1 || n0 >= n1) return;
    if (jb->K == 0 || jb->alpha == 0.0f) {
        scale_c(jb->C, jb->ldc, m0, m1, n0, n1, jb->beta);
        return;
    }
    const int mr = jb->kd.mr, nr = jb->kd.nr;
    const int64_t kc_max = jb->K < KC ? jb->K : KC;
    const int64_t mlen = m1 - m0, nlen = n1 - n0;
    const int64_t mc_max = (mlen < MC ? (mlen + mr - 1) / mr : MC / mr) * mr;
    /* Equal NC blocks, each a multiple of nr. */
    const int64_t nblk = (nlen + NC_MAX - 1) / NC_MAX;
    const int64_t nc_max = ((nlen + nblk - 1) / nblk + nr - 1) / nr * nr;
    float *pa = duet_scratch(DUET_SCRATCH_PACK_A, (size_t)(mc_max * kc_max) * sizeof(float));
    float *pb = duet_scratch(DUET_SCRATCH_PACK_B, (size_t)(nc_max * kc_max) * sizeof(float));
    if (!pa || !pb) {
        sgemm_unpacked(jb, m0, m1, n0, n1);
        return;
    }
    float tile[MR_MAX * NR_MAX] __attribute__((aligned(64)));
    for (int64_t pc = 0; pc < jb->K; pc += KC) {
        const int64_t kc = jb->K - pc < KC ? jb->K - pc : KC;
        const float beta = pc == 0 ? jb->beta : 1.0f;
        for (int64_t ic = m0; ic < m1; ic += mc_max) {
            const int64_t mc = m1 - ic < mc_max ? m1 - ic : mc_max;
            pack_a(pa, jb->A, jb->lda, jb->trans_a, ic, mc, pc, kc, mr);
            for (int64_t jc = n0; jc < n1; jc += nc_max) {
                const int64_t nc = n1 - jc < nc_max ? n1 - jc : nc_max;
                jb->bs->pack(jb->bs, pb, pc, kc, jc, nc, nr);
                for (int64_t ir = 0; ir < mc; ir += mr) {
                    const float *ap = pa + (ir / mr) * kc * mr;
                    const int rows = (int)(mc - ir < mr ? mc - ir : mr);
                    for (int64_t jr = 0; jr < nc; jr += nr) {
                        const float *bp = pb + (jr / nr) * kc * nr;
                        const int cols = (int)(nc - jr < nr ? nc - jr : nr);
                        float *cp = jb->C + (ic + ir) * jb->ldc + jc + jr;
                        if (rows == mr && cols == nr) {
                            jb->kd.kernel(kc, ap, bp, cp, jb->ldc, jb->alpha, beta);
                            continue;
                        }
                        /* Edge tile: full tile into a buffer, then the valid part. */
                        jb->kd.kernel(kc, ap, bp, tile, nr, 1.0f, 0.0f);
                        for (int i = 0; i < rows; i++)
                            for (int j = 0; j < cols; j++) {
                                float *c = cp + i * jb->ldc + j;
                                const float v = jb->alpha * tile[i * nr + j];
                                *c = beta == 0.0f ? v : v + beta * *c;
                            }
                    }
                }
            }
        }
    }
}

static void sgemm_task(void *ctx, int ith, int nth) {
    const sgemm_job *jb = ctx;
    if (jb->split_n) {
        const int64_t units = (jb->N + jb->kd.nr - 1) / jb->kd.nr;
        int64_t n0 = units * ith / nth * jb->kd.nr, n1 = units * (ith + 1) / nth * jb->kd.nr;
        if (n1 > jb->N) n1 = jb->N;
        sgemm_rect(jb, 0, jb->M, n0, n1);
    } else {
        const int64_t units = (jb->M + jb->kd.mr - 1) / jb->kd.mr;
        int64_t m0 = units * ith / nth * jb->kd.mr, m1 = units * (ith + 1) / nth * jb->kd.mr;
        if (m1 > jb->M) m1 = jb->M;
        sgemm_rect(jb, m0, m1, 0, jb->N);
    }
}

void duet_sgemm_ex(duet_pool *pool, int level, int trans_a, int64_t M, int64_t N, int64_t K,
                   float alpha, const float *A, int64_t lda, const duet_sgemm_bsrc *bs, float beta,
                   float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    sgemm_job jb = {.kd = kernel_for(level), .trans_a = trans_a, .M = M, .N = N,
                    .K = K < 0 ? 0 : K, .alpha = alpha, .beta = beta, .A = A, .lda = lda,
                    .bs = bs, .C = C, .ldc = ldc};
    const int nth = duet_pool_size(pool);
    const int64_t n_units = (N + jb.kd.nr - 1) / jb.kd.nr;
    const int64_t m_units = (M + jb.kd.mr - 1) / jb.kd.mr;
    jb.split_n = n_units >= 2 * nth || n_units >= m_units;
    /* Tiny products are not worth waking the workers. */
    if (nth == 1 || (double)M * (double)N * (double)(K + 1) < 65536.0)
        sgemm_task(&jb, 0, 1);
    else
        duet_pool_run(pool, sgemm_task, &jb);
}

void duet_sgemm(duet_pool *pool, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                float *C, int64_t ldc) {
    const duet_sgemm_bsrc bs = {duet_sgemm_pack_b_f32, B, ldb, trans_b != 0};
    duet_sgemm_ex(pool, -1, trans_a != 0, M, N, K, alpha, A, lda, &bs, beta, C, ldc);
}
