/* What collaboration asks of vocabularies: can one model's stand in for
 * another's (speculative drafts, fusion)? token by token, the same text; and
 * the ids that end a generation. */
#include <stdlib.h>
#include <string.h>

#include "duet/tok.h"

int duet_vocab_check_compatible(const duet_vocab *target, const duet_vocab *draft, duet_err *err) {
    const int nt = duet_vocab_n(target), nd = duet_vocab_n(draft);
    if (nd > nt)
        return duet_err_set(err, DUET_EINVAL, "the draft vocabulary (%d tokens) is larger than the target's (%d)", nd, nt);
    for (int i = 0; i < nd; i++) {
        size_t la, lb;
        const char *a = duet_vocab_text(target, i, &la), *b = duet_vocab_text(draft, i, &lb);
        if (la != lb || memcmp(a, b, la))
            return duet_err_set(err, DUET_EINVAL, "token %d differs: target '%.40s', draft '%.40s'", i, a, b);
    }
    return 0;
}

int duet_vocab_eog_ids(const duet_vocab *v, int32_t **out) {
    const int nv = duet_vocab_n(v);
    int n = 0;
    for (int i = 0; i < nv; i++) n += duet_vocab_is_eog(v, i) != 0;
    *out = malloc(sizeof **out * (size_t)(n ? n : 1));
    if (!*out) return DUET_ENOMEM;
    n = 0;
    for (int i = 0; i < nv; i++)
        if (duet_vocab_is_eog(v, i)) (*out)[n++] = i;
    return n;
}
