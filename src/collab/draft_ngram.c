/* Model-free drafting from n-grams of the prompt and the text so far
 * ("prompt lookup decoding"): repeated phrases, names and code are common,
 * and proposing their continuation costs nothing. */
#include "duet/spec.h"

int duet_ngram_draft(const int32_t *hist, int n_hist, int n_min, int n_max, int32_t *out, int k_max) {
    if (n_min < 1) n_min = 1;
    for (int n = n_max; n >= n_min; n--) {
        if (n >= n_hist) continue;
        const int32_t *tail = hist + n_hist - n; /* (n) the suffix to look up */
        /* Most recent earlier occurrence first: nearby text predicts best. */
        for (int start = n_hist - n - 1; start >= 0; start--) {
            int j = 0;
            while (j < n && hist[start + j] == tail[j]) j++;
            if (j < n) continue;
            int k = 0;
            for (int at = start + n; at < n_hist && k < k_max; at++) out[k++] = hist[at];
            if (k > 0) return k;
        }
    }
    return 0;
}
