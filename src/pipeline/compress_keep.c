/* compress on a redacted text with the placeholders kept whole (compress.h,
 * duet_compress_text_keep): shared by duet generate --pipeline and the
 * server's pipeline profiles, so both cut a prompt the same way. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "duet/compress.h"
#include "duet/redact.h"

/* mark[i] = 1 where byte i of text (len) belongs to a placeholder the
 * redactor made: one pass per placeholder, not one per token. */
static char *placeholder_bytes(const duet_redactor *r, const char *text, size_t len) {
    char *mark = calloc(len + 1, 1);
    for (int i = 0; mark && r && i < duet_redact_count(r); i++) {
        const char *ph;
        duet_redact_entry(r, i, NULL, NULL, &ph);
        const size_t pl = strlen(ph);
        for (const char *at = strstr(text, ph); at; at = strstr(at + pl, ph)) memset(mark + (at - text), 1, pl);
    }
    return mark;
}

int duet_compress_text_keep(duet_lm *slm, const duet_vocab *v, const char *text, const duet_compress_params *p,
                            const duet_redactor *r, char **out, int *n_in, int *n_kept, duet_err *err) {
    int32_t *ids = NULL, *kept = NULL;
    int *index = NULL;
    float *score = NULL; /* (n) surprisal, +inf on placeholders */
    char *in_ph = NULL;  /* (len) 1 on a placeholder's bytes */
    duet_compress_result res = {0};
    char *buf = NULL;
    *out = NULL;
    const size_t len = strlen(text);
    int rc = duet_compress_check(p, err);
    const int n = rc < 0 ? 0 : duet_tokenize_alloc(v, text, len, duet_vocab_add_bos(v) ? DUET_TOK_ADD_BOS : 0, &ids);
    if (rc == 0 && n <= 0) rc = duet_err_set(err, DUET_EINVAL, "compress: the prompt has no tokens");
    duet_compress_params cp = *p;
    if (rc == 0) rc = duet_compress_tokens(slm, ids, n, &cp, &res, err);
    if (rc == 0 && (!(score = malloc(sizeof *score * (size_t)n)) || !(index = malloc(sizeof *index * (size_t)n)) ||
                    !(kept = malloc(sizeof *kept * (size_t)n)) || !(in_ph = placeholder_bytes(r, text, len))))
        rc = duet_err_set(err, DUET_ENOMEM, "out of memory");
    int protected_tokens = 0;
    size_t off = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        char piece[256];
        const int pl = duet_token_to_piece(v, ids[i], piece, sizeof piece, 0);
        if (pl < 0) rc = duet_err_set(err, pl, "compress: token %d has no text", ids[i]);
        score[i] = res.surprisal[i];
        int on_placeholder = 0;
        for (size_t b = off; pl > 0 && b < off + (size_t)pl && b < len; b++) on_placeholder |= in_ph[b];
        if (on_placeholder) score[i] = INFINITY, protected_tokens++;
        off += pl > 0 ? (size_t)pl : 0;
    }
    if (rc == 0 && off != len) /* the tokens do not spell the text (an SPM space): keep the prompt whole */
        protected_tokens = n;
    if (rc == 0) { /* the placeholders alone may need more than the share asked for: raise it */
        const int forced = cp.keep_head + cp.keep_tail < n ? cp.keep_head + cp.keep_tail : n;
        if (duet_compress_n_kept(n, &cp) < forced + protected_tokens) {
            const double need = (double)(forced + protected_tokens) / n;
            cp.keep_ratio = need < 1 ? need : 1;
        }
        rc = duet_compress_select(score, n, &cp, index, err);
    }
    if (rc > 0) {
        const int nk = rc;
        for (int i = 0; i < nk; i++) kept[i] = ids[index[i]];
        const int64_t need = duet_detokenize(v, kept, nk, NULL, 0, 0);
        rc = need >= 0 && (buf = malloc((size_t)need + 1)) ? 0 : duet_err_set(err, DUET_ENOMEM, "out of memory");
        if (rc == 0) duet_detokenize(v, kept, nk, buf, (size_t)need + 1, 0);
        if (n_in) *n_in = n;
        if (n_kept) *n_kept = nk;
    }
    duet_compress_result_free(&res);
    free(ids), free(kept), free(index), free(score), free(in_ph);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}
