/* duet_gguf_quantize: read a model, choose each tensor's type with llama.cpp's
 * rules (gguf_qmix.c), and write the result with the input's metadata plus
 * general.quantization_version and general.file_type. Tensors are converted
 * while the file is written (rows in parallel, through the reference
 * quantizers), so memory stays at one tensor beyond the mapped input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/gguf_quantize.h"
#include "duet/threadpool.h"
#include "gguf/gguf_internal.h"
#include "gguf/gguf_qmix.h"

#define GGUF_QUANTIZATION_VERSION 2

typedef struct quantize_run quantize_run;

/* One tensor's conversion. */
typedef struct {
    quantize_run *run;
    const duet_gguf_tensor *src;
    uint32_t to;
    int64_t index;            /* position in the output, for progress */
} convert_job;

struct quantize_run {
    const duet_quantize_params *p;
    duet_pool *pool;
    float *scratch;           /* (nth, longest row) */
    int64_t n_tensors;
    /* the tensor being converted, read by the workers */
    const convert_job *job;
    uint8_t *dst;
    int64_t n_rows, row_len;
    size_t in_row, out_row;
};

static void convert_rows(void *ctx, int ith, int nth) {
    quantize_run *q = ctx;
    const duet_gguf_tensor *src = q->job->src;
    int64_t r0 = q->n_rows * ith / nth, r1 = q->n_rows * (ith + 1) / nth;
    float *row = q->scratch + (size_t)ith * (size_t)q->row_len; /* (row_len) */
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *in = (const uint8_t *)src->data + (size_t)r * q->in_row;
        const float *f = row;
        if (src->type == DUET_TYPE_F32) f = (const float *)in; /* the mapping is page-aligned, rows 4-byte */
        else duet_dequantize_row((duet_type)src->type, in, row, q->row_len);
        duet_quantize_row((duet_type)q->job->to, f, q->dst + (size_t)r * q->out_row, q->row_len);
    }
}

static int fill_converted(void *ctx, const char *name, void *dst, size_t nbytes, duet_err *err) {
    const convert_job *j = ctx;
    quantize_run *q = j->run;
    const duet_gguf_tensor *t = j->src;
    if (q->p->progress) q->p->progress(q->p->progress_ud, j->index, q->n_tensors, name, t->type, j->to);
    q->job = j;
    q->dst = dst;
    q->row_len = t->ne[0];
    q->n_rows = t->ne[1] * t->ne[2] * t->ne[3];
    q->in_row = duet_row_size((duet_type)t->type, q->row_len);
    q->out_row = duet_row_size((duet_type)j->to, q->row_len);
    if (q->out_row * (size_t)q->n_rows != nbytes)
        return duet_err_set(err, DUET_EINVAL, "tensor '%s': size mismatch", name);
    duet_pool_run(q->pool, convert_rows, q);
    return 0;
}

static int set_metadata(duet_gguf_writer *w, const duet_gguf *g, int ftype) {
    int rc = 0;
    for (int64_t i = 0; i < duet_gguf_n_kv(g) && !rc; i++) rc = duet_gguf_copy_kv(w, g, i);
    /* llama.cpp drops split bookkeeping and re-sets these two last
     * (remove + append), which puts them at the end of the key list. */
    static const char *const drop[] = {"split.no", "split.count", "split.tensors.count",
                                       "general.quantization_version", "general.file_type"};
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++) duet_gguf_remove_key(w, drop[i]);
    if (!rc) rc = duet_gguf_set_u32(w, "general.quantization_version", GGUF_QUANTIZATION_VERSION);
    if (!rc) rc = duet_gguf_set_u32(w, "general.file_type", (uint32_t)ftype);
    return rc;
}

/* The hparams llama.cpp's rules consult, from the file's metadata. */
static void model_facts(const duet_gguf *g, gguf_qmix_model *m, char arch[64]) {
    const char *s;
    size_t len;
    arch[0] = 0;
    if (!duet_gguf_get_str(g, "general.architecture", &s, &len, NULL) && len < 64 && !memchr(s, 0, len)) {
        memcpy(arch, s, len);
        arch[len] = 0;
    }
    memset(m, 0, sizeof *m);
    m->arch = arch;
    char key[128];
    int64_t v;
#define FACT(field, suffix)                                                                 \
    snprintf(key, sizeof key, "%s." suffix, arch);                                          \
    if (arch[0] && !duet_gguf_get_int(g, key, &v, NULL) && v > 0 && v < (1 << 24)) m->field = (int)v
    FACT(n_layer, "block_count");
    FACT(n_expert, "expert_count");
    FACT(n_head, "attention.head_count");
    FACT(n_head_kv, "attention.head_count_kv");
#undef FACT
    if (!m->n_head_kv) m->n_head_kv = m->n_head;
}

int duet_gguf_quantize(const char *in_path, const char *out_path, const duet_quantize_params *p,
                       duet_quantize_stats *stats, duet_err *err) {
    if (!in_path || !out_path || !p) return duet_err_set(err, DUET_EINVAL, "duet_gguf_quantize: bad arguments");
    duet_quantize_stats st;
    memset(&st, 0, sizeof st);
    duet_gguf *g = NULL;
    int rc = duet_gguf_open(&g, in_path, err);
    if (rc) return rc;
    int64_t n = duet_gguf_n_tensors(g);
    quantize_run q = {.p = p, .n_tensors = n};
    const duet_gguf_tensor **order = malloc((size_t)(n ? n : 1) * sizeof *order);
    convert_job *jobs = calloc((size_t)(n ? n : 1), sizeof *jobs);
    duet_gguf_writer *w = duet_gguf_writer_new();
    if (!order || !jobs || !w) {
        rc = duet_err_set(err, DUET_ENOMEM, "out of memory");
        goto done;
    }
    gguf_qmix mix;
    gguf_qmix_model facts;
    char arch[64];
    model_facts(g, &facts, arch);
    if ((rc = gguf_qmix_init(&mix, &facts, p->ftype, p->pure, err))) goto done;
    for (int64_t i = 0; i < n; i++) {
        order[i] = duet_gguf_tensor_at(g, i);
        gguf_qmix_see(&mix, order[i]->name);
    }
    /* llama.cpp writes (and counts layers) in this order */
    qsort(order, (size_t)n, sizeof *order, gguf_qmix_order);
    if ((rc = set_metadata(w, g, p->ftype))) {
        rc = duet_err_set(err, rc, "%s: cannot copy metadata", in_path);
        goto done;
    }
    int64_t longest_row = 0;
    for (int64_t i = 0; i < n; i++) {
        const duet_gguf_tensor *t = order[i];
        uint32_t to = gguf_qmix_quantizable(t) ? gguf_qmix_type(&mix, t) : t->type;
        jobs[i] = (convert_job){.run = &q, .src = t, .to = to, .index = i};
        if (to == t->type) {
            rc = duet_gguf_add_tensor(w, t->name, to, t->n_dims, t->ne, t->data);
            st.bytes_out += t->nbytes;
        } else {
            rc = duet_gguf_add_tensor_fill(w, t->name, to, t->n_dims, t->ne, fill_converted, &jobs[i]);
            st.bytes_out += duet_row_size((duet_type)to, t->ne[0]) * (size_t)(t->ne[1] * t->ne[2] * t->ne[3]);
            st.n_converted++;
            if (t->ne[0] > longest_row) longest_row = t->ne[0];
        }
        if (rc) {
            rc = duet_err_set(err, rc, "cannot add tensor '%s'", t->name);
            goto done;
        }
        st.n_tensors++;
        st.bytes_in += t->nbytes;
        if (to < DUET_TYPE_COUNT) st.type_count[to]++;
    }
    if (st.n_converted) {
        q.pool = duet_pool_new(p->n_threads);
        q.scratch = q.pool ? malloc((size_t)duet_pool_size(q.pool) * (size_t)longest_row * sizeof(float)) : NULL;
        if (!q.scratch) {
            rc = duet_err_set(err, DUET_ENOMEM, "out of memory (threads or row buffers)");
            goto done;
        }
    }
    rc = duet_gguf_writer_write(w, out_path, err);
    if (!rc && stats) *stats = st;
done:
    duet_pool_free(q.pool);
    free(q.scratch);
    duet_gguf_writer_free(w);
    free(jobs);
    free(order);
    duet_gguf_close(g);
    return rc;
}
