/* The word view of a vocabulary for the content signals of routing: which
 * tokens begin a word, which continue one, and their letters; and the
 * English function words that are not content.
 *
 * Why content words: a grounded answer (a name, an object the text already
 * mentioned) repeats a content word of the prompt. When the SLM's favourite
 * first token begins none of them, or it gives real weight to another one
 * besides its favourite, the SLM is unsure which of the prompt's entities
 * comes next -- the case a stronger model resolves (docs/routing.md). */
#include <stdlib.h>
#include <string.h>

#include "collab/route_words.h"

#define PIECE_CAP 256
#define WORD_BUF 16 /* longer words are content words: no function word is that long */

enum { WORD_START = 1, WORD_CONT = 2 };

struct duet_route_words {
    int n_vocab;
    uint8_t *kind;  /* (n_vocab) WORD_START, WORD_CONT or 0 */
    uint32_t *off;  /* (n_vocab + 1) the letters of token v: text[off[v], off[v + 1]) */
    char *text;     /* every token's letters, lowercase, back to back */
};

/* The stopwords of NLTK's English list (function words: pronouns, articles,
 * auxiliaries, prepositions, conjunctions, a few adverbs), sorted for bsearch. */
static const char *const function_words[] = {
    "a",       "about",   "above",   "after",   "again",      "against", "all",     "am",      "an",      "and",
    "any",     "are",     "as",      "at",      "be",         "because", "been",    "before",  "being",   "below",
    "between", "both",    "but",     "by",      "can",        "did",     "do",      "does",    "doing",   "don",
    "down",    "during",  "each",    "few",     "for",        "from",    "further", "had",     "has",     "have",
    "having",  "he",      "her",     "here",    "hers",       "herself", "him",     "himself", "his",     "how",
    "i",       "if",      "in",      "into",    "is",         "it",      "its",     "itself",  "just",    "me",
    "more",    "most",    "my",      "myself",  "no",         "nor",     "not",     "now",     "of",      "off",
    "on",      "once",    "only",    "or",      "other",      "our",     "ours",    "ourselves", "out",   "over",
    "own",     "same",    "she",     "should",  "so",         "some",    "such",    "than",    "that",    "the",
    "their",   "theirs",  "them",    "themselves", "then",    "there",   "these",   "they",    "this",    "those",
    "through", "to",      "too",     "under",   "until",      "up",      "very",    "was",     "we",      "were",
    "what",    "when",    "where",   "which",   "while",      "who",     "whom",    "why",     "will",    "with",
    "you",     "your",    "yours",   "yourself", "yourselves",
};

static int cmp_word(const void *key, const void *elem) { return strcmp(key, *(const char *const *)elem); }

int duet_route_is_function_word(const char *word, size_t len) {
    char buf[WORD_BUF];
    if (len >= sizeof buf) return 0;
    memcpy(buf, word, len);
    buf[len] = 0;
    return bsearch(buf, function_words, sizeof function_words / sizeof *function_words, sizeof *function_words,
                   cmp_word) != NULL;
}

static int is_letter(unsigned char c) { return (c | 32) >= 'a' && (c | 32) <= 'z' ? 1 : c >= 0x80; }

int duet_route_words_new(duet_route_words **out, const duet_vocab *vocab, duet_err *err) {
    *out = NULL;
    const int n = duet_vocab_n(vocab);
    duet_route_words *w = calloc(1, sizeof *w);
    size_t cap = (size_t)n * 8 + 1, len = 0; /* the letters' room, grown below if needed */
    if (w) w->kind = calloc((size_t)n, 1), w->off = malloc(sizeof *w->off * ((size_t)n + 1)), w->text = malloc(cap);
    if (!w || !w->kind || !w->off || !w->text) goto oom;
    w->n_vocab = n;
    for (int v = 0; v < n; v++) {
        char piece[PIECE_CAP];
        const int k = duet_token_to_piece(vocab, v, piece, sizeof piece, 0);
        w->off[v] = (uint32_t)len;
        if (k <= 0 || k >= PIECE_CAP) continue; /* control tokens, and pieces too long to be words */
        const int lead = piece[0] == ' ';
        int letters = k > lead;
        for (int i = lead; i < k && letters; i++) letters = is_letter((unsigned char)piece[i]);
        if (!letters) continue;
        w->kind[v] = lead ? WORD_START : WORD_CONT;
        if (len + (size_t)(k - lead) > cap) {
            char *t = realloc(w->text, cap * 2 + (size_t)k);
            if (!t) goto oom;
            w->text = t, cap = cap * 2 + (size_t)k;
        }
        for (int i = lead; i < k; i++) {
            const unsigned char c = (unsigned char)piece[i];
            w->text[len++] = (char)(c < 0x80 ? c | 32 : c);
        }
    }
    w->off[n] = (uint32_t)len;
    *out = w;
    return 0;
oom:
    duet_route_words_free(w);
    return duet_err_set(err, DUET_ENOMEM, "route: out of memory for the vocabulary's words");
}

void duet_route_words_free(duet_route_words *w) {
    if (!w) return;
    free(w->kind), free(w->off), free(w->text);
    free(w);
}

/* Appends a token's letters to the word being read (only its length counts
 * once it is too long to be a function word). */
static void word_append(const duet_route_words *w, int v, char *word, size_t *len) {
    const size_t k = w->off[v + 1] - w->off[v];
    if (*len + k < WORD_BUF) memcpy(word + *len, w->text + w->off[v], k);
    *len += k;
}

void route_words_mark_content(const duet_route_words *w, const int32_t *prompt, int n_prompt, uint8_t *content,
                              int n_vocab) {
    char word[WORD_BUF];
    int start = -1; /* the position of the word's first token, -1 outside a word */
    size_t len = 0;
    for (int i = 0; i <= n_prompt; i++) {
        const int v = i < n_prompt ? prompt[i] : -1;
        const int kind = v >= 0 && v < w->n_vocab && v < n_vocab ? w->kind[v] : 0;
        if (kind == WORD_CONT && start >= 0) {
            word_append(w, v, word, &len);
            continue;
        }
        if (start >= 0 && len >= 3 && !duet_route_is_function_word(word, len)) content[prompt[start]] = 1;
        start = -1, len = 0;
        if (kind == WORD_START) start = i, word_append(w, v, word, &len);
    }
}
