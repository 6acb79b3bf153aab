/* Value-type sizes and names, and the tensor-type block geometry the reader
 * validates against. */
#include "duet/quant.h"
#include "gguf/gguf_internal.h"

size_t gguf_vtype_size(uint32_t t) {
    switch (t) {
    case DUET_GGUF_UINT8: case DUET_GGUF_INT8: case DUET_GGUF_BOOL: return 1;
    case DUET_GGUF_UINT16: case DUET_GGUF_INT16: return 2;
    case DUET_GGUF_UINT32: case DUET_GGUF_INT32: case DUET_GGUF_FLOAT32: return 4;
    case DUET_GGUF_UINT64: case DUET_GGUF_INT64: case DUET_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

const char *duet_gguf_vtype_name(duet_gguf_vtype t) {
    static const char *const names[DUET_GGUF_NTYPES] = {
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
        "bool", "string", "array", "uint64", "int64", "float64"};
    return (unsigned)t < DUET_GGUF_NTYPES ? names[t] : "?";
}

/* Tensor types are whatever src/core/quant.c supports (ggml's geometry). */
int gguf_type_block(uint32_t type, int64_t *blck, size_t *type_size, const char **name) {
    const duet_type_traits *tr = duet_type_info(type);
    if (!tr) return 0;
    *blck = tr->blck;
    *type_size = tr->type_size;
    if (name) *name = tr->name;
    return 1;
}
