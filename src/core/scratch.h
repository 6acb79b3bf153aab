/* internal: not part of the public API; may change. */
/* Per-thread scratch buffers for the matrix kernels (internal).
 *
 * Packing panels and converted activations are needed on every call; malloc'ing
 * them each time would page-fault fresh memory hundreds of times per token.
 * Instead every thread keeps a few buffers that only grow, and are freed when
 * the thread exits (pool workers and any other caller thread alike). */
#ifndef DUET_CORE_SCRATCH_H
#define DUET_CORE_SCRATCH_H

#include <stddef.h>

/* One buffer per slot, so nested users (matmul holding converted activations
 * while sgemm packs panels) do not overwrite each other. */
enum {
    DUET_SCRATCH_ACT = 0,    /* matmul: activations converted to the dot type */
    DUET_SCRATCH_ACT_AUX,    /* matmul: per-block activation scales and sums */
    DUET_SCRATCH_PACK_A,     /* sgemm: packed panel of op(A) */
    DUET_SCRATCH_PACK_B,     /* sgemm: packed panel of op(B) */
    DUET_SCRATCH_PACK_W,     /* quantized gemm: repacked weight tile */
    DUET_SCRATCH_SLOTS
};

/* A 64-byte aligned buffer of at least `bytes` bytes owned by the calling
 * thread, valid until its next call with the same slot. The contents are not
 * preserved when it grows. NULL if the allocation fails. */
void *duet_scratch(int slot, size_t bytes);

#endif
