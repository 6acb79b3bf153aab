/* Chat templates: the exact text of each format, written by hand from the
 * formats the model families document (Qwen/ChatML, Meta Llama 2 and Llama 3,
 * Mistral 7B Instruct, Zephyr, Phi-3, Gemma), template detection from Jinja
 * texts (including the vocab GGUFs' own), and tokenization of a rendered chat. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet/tok.h"
#include "testutil.h"

static const duet_chat_msg chat[] = {
    {"system", "You are terse."},
    {"user", "Hi!"},
    {"assistant", "Hello."},
    {"user", "Name a colour."},
};

static void expect_render(duet_chat_template t, int gen, const char *want) {
    char *out = NULL;
    size_t len = 0;
    duet_err err = {0};
    cr_assert_eq(duet_chat_apply(t, chat, 4, gen, &out, &len, &err), 0, "%s", err.msg);
    cr_expect_str_eq(out, want, "template %s", duet_chat_template_name(t));
    cr_expect_eq(len, strlen(want));
    free(out);
}

Test(chat, chatml) {
    expect_render(DUET_CHAT_CHATML, 1,
                  "<|im_start|>system\nYou are terse.<|im_end|>\n"
                  "<|im_start|>user\nHi!<|im_end|>\n"
                  "<|im_start|>assistant\nHello.<|im_end|>\n"
                  "<|im_start|>user\nName a colour.<|im_end|>\n"
                  "<|im_start|>assistant\n");
    expect_render(DUET_CHAT_CHATML, 0,
                  "<|im_start|>system\nYou are terse.<|im_end|>\n"
                  "<|im_start|>user\nHi!<|im_end|>\n"
                  "<|im_start|>assistant\nHello.<|im_end|>\n"
                  "<|im_start|>user\nName a colour.<|im_end|>\n");
}

Test(chat, llama2) {
    expect_render(DUET_CHAT_LLAMA2, 1,
                  "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi! [/INST] Hello. </s>"
                  "<s>[INST] Name a colour. [/INST]");
}

Test(chat, llama3) {
    expect_render(DUET_CHAT_LLAMA3, 1,
                  "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

Test(chat, mistral) {
    expect_render(DUET_CHAT_MISTRAL, 1, "[INST] You are terse.\n\nHi! [/INST]Hello.</s>[INST] Name a colour. [/INST]");
}

Test(chat, zephyr) {
    expect_render(DUET_CHAT_ZEPHYR, 1,
                  "<|system|>\nYou are terse.</s>\n<|user|>\nHi!</s>\n<|assistant|>\nHello.</s>\n"
                  "<|user|>\nName a colour.</s>\n<|assistant|>\n");
}

Test(chat, phi3) {
    expect_render(DUET_CHAT_PHI3, 1,
                  "<|system|>\nYou are terse.<|end|>\n<|user|>\nHi!<|end|>\n<|assistant|>\nHello.<|end|>\n"
                  "<|user|>\nName a colour.<|end|>\n<|assistant|>\n");
}

Test(chat, gemma) {
    expect_render(DUET_CHAT_GEMMA, 1,
                  "<start_of_turn>user\nYou are terse.\n\nHi!<end_of_turn>\n"
                  "<start_of_turn>model\nHello.<end_of_turn>\n"
                  "<start_of_turn>user\nName a colour.<end_of_turn>\n"
                  "<start_of_turn>model\n");
}

Test(chat, trimming_follows_the_official_templates) {
    duet_chat_msg m[] = {{"user", "  padded \n"}};
    char *out = NULL;
    cr_assert_eq(duet_chat_apply(DUET_CHAT_LLAMA3, m, 1, 0, &out, NULL, NULL), 0);
    cr_expect_str_eq(out, "<|start_header_id|>user<|end_header_id|>\n\npadded<|eot_id|>"); /* | trim */
    free(out);
    cr_assert_eq(duet_chat_apply(DUET_CHAT_CHATML, m, 1, 0, &out, NULL, NULL), 0);
    cr_expect_str_eq(out, "<|im_start|>user\n  padded \n<|im_end|>\n"); /* kept as is */
    free(out);
    cr_assert_eq(duet_chat_apply(DUET_CHAT_LLAMA2, m, 1, 0, &out, NULL, NULL), 0);
    cr_expect_str_eq(out, "[INST] padded [/INST]"); /* .strip() */
    free(out);
}

Test(chat, empty_and_bad_arguments) {
    char *out = NULL;
    cr_assert_eq(duet_chat_apply(DUET_CHAT_CHATML, NULL, 0, 1, &out, NULL, NULL), 0);
    cr_expect_str_eq(out, "<|im_start|>assistant\n");
    free(out);
    duet_chat_msg bad[] = {{"user", NULL}};
    duet_err err = {0};
    cr_expect_eq(duet_chat_apply(DUET_CHAT_CHATML, bad, 1, 1, &out, NULL, &err), DUET_EINVAL);
    cr_expect_eq(duet_chat_apply(DUET_CHAT_UNKNOWN, chat, 4, 1, &out, NULL, &err), DUET_EINVAL);
}

static duet_chat_template detect(const char *text) {
    duet_chat_template t = DUET_CHAT_UNKNOWN;
    duet_err err = {0};
    int rc = duet_chat_detect(text, &t, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    return t;
}

/* Template texts as the model families publish them (abridged to the parts
 * that identify them). */
Test(chat, detect_from_jinja) {
    cr_expect_eq(detect("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                        "'<|im_end|>' + '\\n'}}{% endfor %}"),
                 DUET_CHAT_CHATML);
    cr_expect_eq(detect("{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + "
                        "system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% endif %}{% if message['role'] == "
                        "'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"),
                 DUET_CHAT_LLAMA2);
    cr_expect_eq(detect("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
                        "message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ "
                        "message['content'] + eos_token}}{% endif %}{% endfor %}"),
                 DUET_CHAT_MISTRAL);
    cr_expect_eq(detect("{% for message in messages %}\\n{% if message['role'] == 'user' %}\\n{{ '<|user|>\\n' + "
                        "message['content'] + eos_token }}\\n{% elif message['role'] == 'assistant' %}\\n{{ "
                        "'<|assistant|>\\n'  + message['content'] + eos_token }}\\n{% endif %}"),
                 DUET_CHAT_ZEPHYR);
    cr_expect_eq(detect("{% for message in messages %}{% if message['role'] == 'user' %}{{'<|user|>\\n' + "
                        "message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' "
                        "+ message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}"),
                 DUET_CHAT_PHI3);
    cr_expect_eq(detect("{% for message in messages %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + "
                        "'<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}"),
                 DUET_CHAT_GEMMA);
    cr_expect_eq(detect("{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | "
                        "trim + '<|eot_id|>' }}"),
                 DUET_CHAT_LLAMA3);
}

Test(chat, explicit_name_overrides_and_unknown_is_an_error_with_hint) {
    const char *names[] = {"chatml", "llama2", "llama3", "mistral", "zephyr", "phi3", "gemma"};
    for (int i = 0; i < 7; i++) {
        cr_expect_eq(detect(names[i]), (duet_chat_template)(DUET_CHAT_CHATML + i));
        cr_expect_str_eq(duet_chat_template_name((duet_chat_template)(DUET_CHAT_CHATML + i)), names[i]);
    }
    duet_chat_template t = DUET_CHAT_CHATML;
    duet_err err = {0};
    cr_expect_eq(duet_chat_detect("{{ messages | tojson }}", &t, &err), DUET_ENOTFOUND);
    cr_expect_eq(t, DUET_CHAT_UNKNOWN);
    for (int i = 0; i < 7; i++) cr_expect(strstr(err.msg, names[i]), "hint lacks %s: %s", names[i], err.msg);
    cr_expect_null(duet_chat_template_name(DUET_CHAT_UNKNOWN));
}

static duet_vocab *load(const char *name) {
    char rel[256], path[1024];
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", name);
    duet_err err = {0};
    duet_vocab *v = NULL;
    cr_assert_eq(duet_vocab_load_file(&v, tu_data(rel, path, sizeof path), &err), 0, "%s", err.msg);
    return v;
}

static int count(const int32_t *ids, int n, int32_t id) {
    int c = 0;
    for (int i = 0; i < n; i++) c += ids[i] == id;
    return c;
}

/* The vocab GGUFs' own templates are recognised, and the rendered chat
 * tokenizes into the model's control tokens. */
Test(chat, vocab_templates_detected_and_tokenized) {
    duet_vocab *v = load("llama-bpe");
    cr_assert_not_null(duet_vocab_chat_template(v));
    duet_chat_template t = detect(duet_vocab_chat_template(v));
    cr_expect_eq(t, DUET_CHAT_LLAMA3);
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(duet_chat_apply(t, chat, 4, 1, &text, &len, NULL), 0);
    int32_t *ids = NULL;
    int n = duet_tokenize_alloc(v, text, len, DUET_TOK_ADD_BOS | DUET_TOK_PARSE_SPECIAL, &ids);
    cr_assert_gt(n, 10);
    int32_t start = duet_vocab_find(v, "<|start_header_id|>", 19), end = duet_vocab_find(v, "<|end_header_id|>", 17),
            eot = duet_vocab_find(v, "<|eot_id|>", 10);
    cr_expect_eq(ids[0], duet_vocab_bos(v));
    cr_expect_eq(ids[1], start);
    cr_expect_eq(count(ids, n, start), 5);
    cr_expect_eq(count(ids, n, end), 5);
    cr_expect_eq(count(ids, n, eot), 4);
    cr_expect_eq(ids[n - 2], end); /* ... assistant<|end_header_id|> "\n\n" */
    free(ids);
    free(text);
    duet_vocab_free(v);

    v = load("qwen2");
    cr_assert_not_null(duet_vocab_chat_template(v));
    t = detect(duet_vocab_chat_template(v));
    cr_expect_eq(t, DUET_CHAT_CHATML);
    cr_assert_eq(duet_chat_apply(t, chat, 4, 1, &text, &len, NULL), 0);
    n = duet_tokenize_alloc(v, text, len, DUET_TOK_PARSE_SPECIAL, &ids);
    int32_t im_start = duet_vocab_find(v, "<|im_start|>", 12), im_end = duet_vocab_find(v, "<|im_end|>", 10);
    cr_expect_eq(ids[0], im_start);
    cr_expect_eq(count(ids, n, im_start), 5);
    cr_expect_eq(count(ids, n, im_end), 4);
    /* without PARSE_SPECIAL the same text holds no control token */
    free(ids);
    n = duet_tokenize_alloc(v, text, len, 0, &ids);
    cr_expect_eq(count(ids, n, im_start) + count(ids, n, im_end), 0);
    free(ids);
    free(text);
    duet_vocab_free(v);
}
