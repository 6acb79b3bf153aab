/* libFuzzer target: the items reader of duet eval and duet route-fit
 * (tools/duet/eval_items.c) on any bytes. It must refuse with a message or
 * give items that keep its promises: a non-empty prompt and an id, a label
 * of -1, 0 or 1, an answer unless a label stands in for it, finite signals
 * and hidden values. The scoring rule is driven on the same bytes: a verdict
 * is -1, 0 or 1 and "correct" needs the text to start with " " + answer. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd_eval.h"

static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    snprintf(path, sizeof path, "/tmp/duet-fuzz-items-%d.jsonl", (int)getpid());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const int label_ok = data[0] & 1;
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data + 1, 1, size - 1, f);
    fclose(f);
    eval_items it;
    const int rc = eval_items_load(&it, path, NULL, label_ok); /* NULL: no message per refused file */
    if (rc != 0 && rc != -1) abort();
    if (rc == 0) {
        if (it.n < 1) abort();
        for (int i = 0; i < it.n; i++) {
            const eval_item *x = &it.v[i];
            if (!x->prompt || !x->prompt[0] || !x->id || x->line < 1) abort();
            if (x->label < -1 || x->label > 1 || (!label_ok && x->label != -1)) abort();
            if (!x->answer && x->label < 0) abort();
            if (x->answer && !x->answer[0]) abort();
            for (int k = 0; x->has_sig && k < DUET_ROUTE_NSIG; k++)
                if (!isfinite(x->sig[k])) abort();
            if ((x->hidden == NULL) != (x->n_hidden == 0)) abort();
            for (int k = 0; k < x->n_hidden; k++)
                if (!isfinite(x->hidden[k])) abort();
            const int v = eval_verdict(x->prompt, x->answer ? x->answer : "", i & 1);
            if (v < -1 || v > 1) abort();
            if (v == 1 && (x->prompt[0] != ' ' || strncmp(x->prompt + 1, x->answer, strlen(x->answer)))) abort();
        }
        eval_items_free(&it);
    }
    unlink(path);
    return 0;
}
