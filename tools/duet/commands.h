/* The subcommands of the duet CLI. Each lives in its own cmd_<name>.c and is
 * declared weak here, so `duet help` lists exactly the commands that are
 * built. Every command returns its exit status (0 ok, 1 error, 2 usage). */
#ifndef DUET_COMMANDS_H
#define DUET_COMMANDS_H

#define DUET_COMMANDS(X)                                                              \
    X(info, "architecture, hyperparameters, tensor types and tokenizer of a GGUF")    \
    X(logits, "float32 logits of every position of a token list")                     \
    X(generate, "generate text (sampling, speculative decoding with --draft)")        \
    X(tokenize, "text on stdin to token ids")                                         \
    X(detokenize, "token ids on stdin to text")                                       \
    X(quantize, "convert a GGUF's weights to another type")                           \
    X(synth, "write a random-weight model of any shape")                              \
    X(bench, "prefill/decode tokens/s and % of the bandwidth roofline")               \
    X(perplexity, "mean loss and perplexity of a model over a text file")             \
    X(compress, "drop a prompt's least surprising tokens (SLM surprisal, LLMLingua)")     \
    X(tokenizer_train, "train a byte-level BPE tokenizer (duet tokenizer-train)")     \
    X(train, "train a llama model from scratch or fine-tune one")                     \
    X(distill, "distill a student from a teacher model")                              \
    X(serve, "OpenAI-compatible server with collaboration profiles and a playground") \
    X(eval, "accuracy of a strategy (slm, llm, route, cascade, defer) on cloze items")   \
    X(route_fit, "fit and calibrate a router on labelled items (duet route-fit)")

#define DUET_DECLARE_CMD(name, help) int cmd_##name(int argc, char **argv) __attribute__((weak));
DUET_COMMANDS(DUET_DECLARE_CMD)
#undef DUET_DECLARE_CMD

#endif
