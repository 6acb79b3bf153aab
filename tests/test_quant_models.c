/* The reference models of ../shared/data/ref-models, quantized by
 * llama.cpp: every quantized tensor dequantizes to within its type's error
 * bound of the F32 master tensor, and re-quantizing the master with our
 * reference quantizers gives llama.cpp's bytes exactly (all rows; every
 * third row for the K-quants). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/gguf.h"
#include "duet/quant.h"
#include "test_quant_util.h"
#include "testutil.h"

static duet_gguf *open_model(const char *name) {
    char rel[256], path[1024];
    snprintf(rel, sizeof rel, "ref-models/%s.gguf", name);
    duet_gguf *g = NULL;
    duet_err err = {0};
    const int rc = duet_gguf_open(&g, tu_data(rel, path, sizeof path), &err);
    cr_assert_eq(rc, 0, "%s: %s", path, err.msg);
    return g;
}

/* Checks every non-F32 tensor of model-TYPE against model-F32; returns the
 * number of tensors checked. */
static int check_file(const char *model, const char *type) {
    char name[128];
    snprintf(name, sizeof name, "%s-F32", model);
    duet_gguf *master = open_model(name);
    snprintf(name, sizeof name, "%s-%s", model, type);
    duet_gguf *q = open_model(name);
    int checked = 0;
    for (int64_t i = 0; i < duet_gguf_n_tensors(q); i++) {
        const duet_gguf_tensor *t = duet_gguf_tensor_at(q, i);
        if (t->type == DUET_TYPE_F32) continue;
        const duet_gguf_tensor *m = duet_gguf_find_tensor(master, t->name);
        cr_assert_not_null(m, "%s: %s missing in F32 file", name, t->name);
        cr_assert_eq(m->type, DUET_TYPE_F32);
        const duet_type_traits *tr = duet_type_info(t->type);
        cr_assert_not_null(tr, "%s: %s has unsupported type %u", name, t->name, t->type);
        const int64_t ne0 = t->ne[0], rows = t->ne[1] * t->ne[2] * t->ne[3];
        cr_assert_eq(ne0, m->ne[0]);
        const size_t rs = duet_row_size((duet_type)t->type, ne0);
        cr_assert_eq(rs * (size_t)rows, t->nbytes, "%s: %s size", name, t->name);
        float *deq = malloc((size_t)ne0 * sizeof *deq);
        uint8_t *req = malloc(rs);
        for (int64_t r = 0; r < rows; r++) {
            const float *src = (const float *)m->data + r * ne0;
            const uint8_t *qrow = (const uint8_t *)t->data + (size_t)r * rs;
            duet_dequantize_row((duet_type)t->type, qrow, deq, ne0);
            if (t->type == DUET_TYPE_F16 || t->type == DUET_TYPE_BF16) {
                for (int64_t k = 0; k < ne0; k++) {
                    const double rel = t->type == DUET_TYPE_F16 ? 0x1p-11 : 0x1p-8;
                    cr_assert(fabs(deq[k] - src[k]) <= fabs(src[k]) * rel + 0x1p-25, "%s %s [%ld,%ld]",
                              name, t->name, (long)r, (long)k);
                }
            } else {
                const int64_t bad = qt_check_error((duet_type)t->type, src, deq, ne0, NULL);
                cr_assert_eq(bad, -1, "%s %s row %ld elem %ld: %g -> %g", name, t->name, (long)r,
                             (long)bad, bad >= 0 ? src[bad] : 0.0, bad >= 0 ? deq[bad] : 0.0);
            }
            /* K-quant scale searches are slow under sanitizers: re-quantize
             * every third row of those (every row of the others) */
            const int kq = t->type == DUET_TYPE_Q4_K || t->type == DUET_TYPE_Q5_K || t->type == DUET_TYPE_Q6_K;
            if (kq && r % 3) continue;
            duet_quantize_row((duet_type)t->type, src, req, ne0);
            cr_assert_eq(memcmp(req, qrow, rs), 0, "%s %s row %ld: requantized bytes differ", name,
                         t->name, (long)r);
        }
        free(deq);
        free(req);
        checked++;
    }
    duet_gguf_close(q);
    duet_gguf_close(master);
    return checked;
}

#define MODEL_TEST(model, type, want)                                                    \
    Test(quant_models, model##_##type) {                                                 \
        const char *m = #model;                                                          \
        char buf[32];                                                                    \
        snprintf(buf, sizeof buf, "%s", m);                                              \
        for (char *p = buf; *p; p++) if (*p == '_') *p = '-';                            \
        cr_assert_eq(check_file(buf, #type), want, "%s-%s tensors checked", buf, #type); \
    }

MODEL_TEST(llama_a, F16, 16)
MODEL_TEST(llama_a, BF16, 16)
MODEL_TEST(llama_a, Q8_0, 16)
MODEL_TEST(llama_a, Q4_0, 16)
MODEL_TEST(llama_a, Q4_1, 16)
MODEL_TEST(llama_a, Q5_0, 16)
MODEL_TEST(llama_a, Q5_1, 16)
MODEL_TEST(llama_a, Q4_K_M, 16)
MODEL_TEST(llama_a, Q5_K_M, 16)
MODEL_TEST(llama_a, Q6_K, 16)
MODEL_TEST(qwen2_b, F16, 15)
MODEL_TEST(qwen2_b, Q8_0, 15)
MODEL_TEST(qwen2_b, Q4_0, 15)
MODEL_TEST(qwen2_b, Q4_K_M, 15)
MODEL_TEST(qwen2_b, Q5_K_M, 15)
MODEL_TEST(qwen2_b, Q6_K, 15)
