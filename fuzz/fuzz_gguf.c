/* libFuzzer target: any byte string through duet_gguf_open_memory, then a
 * walk over every key, value, array element, string and tensor byte range
 * the handle exposes. ASan flags any view outside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "duet/gguf.h"

static volatile uint64_t sink;

static uint64_t walk_kv(const duet_gguf *g, int64_t i) {
    uint64_t acc = 0;
    const char *key = duet_gguf_key(g, i);
    acc += strlen(key) + (uint64_t)duet_gguf_kv_type(g, i);
    if (duet_gguf_find_key(g, key) != i) abort(); /* keys are unique */
    int64_t iv;
    double fv;
    int bv;
    const char *s;
    size_t len;
    if (!duet_gguf_get_int(g, key, &iv, NULL)) acc += (uint64_t)iv;
    if (!duet_gguf_get_float(g, key, &fv, NULL)) acc += fv != fv;
    if (!duet_gguf_get_bool(g, key, &bv, NULL)) acc += (uint64_t)bv;
    if (!duet_gguf_get_str(g, key, &s, &len, NULL))
        for (size_t k = 0; k < len; k++) acc += (uint8_t)s[k];
    duet_gguf_vtype et;
    uint64_t n;
    const void *data;
    if (duet_gguf_get_arr(g, key, &et, &n, &data, NULL)) return acc;
    if (et == DUET_GGUF_STRING) {
        for (uint64_t k = 0; k < n; k++) {
            if (duet_gguf_arr_str(g, key, k, &s, &len, NULL)) abort();
            for (size_t c = 0; c < len; c++) acc += (uint8_t)s[c];
        }
    } else {
        static const size_t size[DUET_GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
        const uint8_t *b = data;
        for (uint64_t k = 0; k < n * size[et]; k++) acc += b[k];
    }
    return acc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* An exactly-sized copy: reads past the end hit ASan's redzone. */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    duet_gguf *g = NULL;
    duet_err err = {0};
    if (duet_gguf_open_memory(&g, copy, size, &err) == 0) {
        uint64_t acc = duet_gguf_version(g) + duet_gguf_alignment(g) + duet_gguf_data_offset(g);
        for (int64_t i = 0; i < duet_gguf_n_kv(g); i++) acc += walk_kv(g, i);
        for (int64_t i = 0; i < duet_gguf_n_tensors(g); i++) {
            const duet_gguf_tensor *t = duet_gguf_tensor_at(g, i);
            if (duet_gguf_find_tensor(g, t->name) != t) abort();
            const uint8_t *d = t->data;
            for (size_t k = 0; k < t->nbytes; k += 64) acc += d[k];
            acc += d[t->nbytes - 1];
        }
        sink = acc;
        duet_gguf_close(g);
    } else if (!err.msg[0]) {
        abort(); /* every failure names its cause */
    }
    free(copy);
    return 0;
}
