/* Seeded RNG: xoshiro256** seeded through splitmix64, so any 64-bit seed
 * (including 0) gives a well-mixed state and the same stream on every machine. */
#include "duet/sample.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void duet_rng_seed(duet_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t duet_rng_next(duet_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float duet_rng_uniform(duet_rng *r) {
    return (float)(duet_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

int duet_rng_pick(duet_rng *r, const float *probs, int n) {
    double total = 0;
    for (int i = 0; i < n; i++) total += probs[i];
    double u = (double)duet_rng_uniform(r) * total, acc = 0;
    int last = -1;
    for (int i = 0; i < n; i++) {
        if (probs[i] <= 0) continue;
        acc += probs[i];
        last = i;
        if (u < acc) return i;
    }
    /* u landed past the rounding-shortened sum: the last nonzero entry. */
    return last < 0 ? 0 : last;
}
