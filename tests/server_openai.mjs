#!/usr/bin/env node
// duet serve through the official OpenAI Node client (the `openai` npm
// package, pinned in package.json; `npm ci` installs it into node_modules/):
// models.list, completions and chat (whole and streamed, the streamed text
// equal to the whole one at temperature 0, usage in the last chunk with
// stream_options.include_usage), duet-spec's greedy text equal to llm's,
// logprobs, n with a seed, and errors the SDK raises as APIError subclasses
// with the server's status, type and param (404 unknown model, 400 bad field,
// 401 wrong key).
//
//   node tests/server_openai.mjs --base http://127.0.0.1:PORT --key KEY
//
// tests/test_server_openai.c starts the server (--api-key KEY) and runs this.
// Exit status: 0 pass, 1 fail, 77 skipped (the openai package is missing).
const SKIP = 77;
const opt = { base: "", key: "" };
for (let i = 2; i < process.argv.length; i++) {
  const k = process.argv[i].replace(/^--/, "");
  if (k in opt && i + 1 < process.argv.length) opt[k] = process.argv[++i];
  else {
    console.error(`usage: server_openai.mjs --base URL --key KEY (unknown: ${process.argv[i]})`);
    process.exit(2);
  }
}
if (!opt.base) {
  console.error("server_openai: --base is required");
  process.exit(2);
}

let OpenAI;
try {
  OpenAI = (await import("openai")).default;
} catch (e) {
  console.log(`SKIPPED: the openai npm package is not installed (run \`npm ci\` at the repository root): ${e.message}`);
  process.exit(SKIP);
}

const log = (...a) => console.log("server_openai:", ...a);
function check(cond, msg) {
  if (!cond) throw new Error(msg);
}
function eq(a, b, msg) {
  if (a !== b) throw new Error(`${msg}: ${JSON.stringify(a)} !== ${JSON.stringify(b)}`);
}

const client = new OpenAI({ baseURL: opt.base + "/v1", apiKey: opt.key || "none", maxRetries: 0, timeout: 60_000 });
const PROMPT = "once upon a time, there was a little girl";
const MESSAGES = [{ role: "user", content: "tell me a story about a dog" }];

async function expectError(what, fn, status, cls, param) {
  try {
    await fn();
  } catch (e) {
    check(e instanceof OpenAI.APIError, `${what}: not an APIError: ${e}`);
    check(e instanceof cls, `${what}: ${e.constructor.name}, expected ${cls.name}`);
    eq(e.status, status, `${what}: status`);
    eq(e.param ?? null, param, `${what}: param`);
    check(typeof e.message === "string" && e.message.length > 0, `${what}: message`);
    check(typeof e.type === "string" && e.type.length > 0, `${what}: type`);
    log(`${what}: ${e.constructor.name} ${e.status} param=${e.param ?? null}: ${e.message}`);
    return e;
  }
  throw new Error(`${what}: no error was raised`);
}

async function streamText(params, chat) {
  const stream = chat ? await client.chat.completions.create({ ...params, stream: true })
                      : await client.completions.create({ ...params, stream: true });
  let text = "", finish = null, usage = null, chunks = 0, last = null;
  for await (const ch of stream) {
    chunks++;
    last = ch;
    for (const c of ch.choices) {
      text += chat ? (c.delta?.content ?? "") : (c.text ?? "");
      if (c.finish_reason) finish = c.finish_reason;
    }
    if (ch.usage) usage = ch.usage;
  }
  return { text, finish, usage, chunks, last };
}

const cases = {
  async models() {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    for (const want of ["llm", "slm", "duet-spec", "duet-spec-ngram"]) check(ids.includes(want), `models: ${want} in ${ids}`);
  },

  async completions_whole_and_streamed() {
    for (const model of ["llm", "duet-spec"]) {
      const params = { model, prompt: PROMPT, max_tokens: 40, temperature: 0 };
      const r = await client.completions.create(params);
      eq(r.object, "text_completion", "object");
      eq(r.model, model, "model");
      check(r.choices.length === 1 && r.choices[0].text.length > 0, "a text");
      check(["stop", "length"].includes(r.choices[0].finish_reason), "finish_reason");
      check(r.usage.completion_tokens > 0 && r.usage.total_tokens === r.usage.prompt_tokens + r.usage.completion_tokens, "usage");
      const s = await streamText({ ...params, stream_options: { include_usage: true } }, false);
      eq(s.text, r.choices[0].text, `${model}: streamed text`);
      eq(s.finish, r.choices[0].finish_reason, `${model}: streamed finish_reason`);
      check(s.chunks > 2, "several chunks");
      check(s.usage && s.last.usage, "usage in the last chunk");
      eq(s.usage.completion_tokens, r.usage.completion_tokens, "streamed usage");
      check(s.last.duet && s.last.duet.profile === model, "the duet accounting object in the last chunk");
    }
  },

  async chat_whole_and_streamed() {
    let ref = null;
    for (const model of ["llm", "duet-spec", "duet-spec-ngram"]) {
      const params = { model, messages: MESSAGES, max_tokens: 40, temperature: 0 };
      const r = await client.chat.completions.create(params);
      eq(r.object, "chat.completion", "object");
      eq(r.choices[0].message.role, "assistant", "role");
      const text = r.choices[0].message.content;
      check(typeof text === "string" && text.length > 0, "content");
      if (ref === null) ref = text;
      else eq(text, ref, `${model}: greedy chat text equals llm's`);
      const s = await streamText(params, true);
      eq(s.text, text, `${model}: streamed chat text`);
      eq(s.finish, r.choices[0].finish_reason, "streamed finish_reason");
    }
  },

  async logprobs_and_n() {
    const r = await client.completions.create({ model: "llm", prompt: PROMPT, max_tokens: 8, temperature: 0, logprobs: 3 });
    const lp = r.choices[0].logprobs;
    eq(lp.tokens.length, r.usage.completion_tokens, "a logprob per token");
    check(lp.token_logprobs.every((x) => typeof x === "number" && x <= 0), "log-probabilities");
    check(lp.top_logprobs.every((t) => Object.keys(t).length >= 1 && Object.keys(t).length <= 3), "top 3");
    const c = await client.chat.completions.create({ model: "llm", messages: MESSAGES, max_tokens: 6, temperature: 0,
                                                     logprobs: true, top_logprobs: 2 });
    eq(c.choices[0].logprobs.content.length, c.usage.completion_tokens, "chat logprobs per token");
    const a = await client.completions.create({ model: "llm", prompt: PROMPT, max_tokens: 16, n: 2, seed: 7, temperature: 1 });
    const b = await client.completions.create({ model: "llm", prompt: PROMPT, max_tokens: 16, n: 2, seed: 7, temperature: 1 });
    eq(a.choices.length, 2, "n=2");
    eq(a.choices[0].text, b.choices[0].text, "seeded choice 0 repeats");
    eq(a.choices[1].text, b.choices[1].text, "seeded choice 1 repeats");
  },

  async errors() {
    const e404 = await expectError("unknown model",
      () => client.completions.create({ model: "gpt-4o", prompt: "hi", max_tokens: 2 }), 404, OpenAI.NotFoundError, "model");
    check(e404.message.includes("duet-spec"), "the 404 lists the known models");
    await expectError("unknown chat model",
      () => client.chat.completions.create({ model: "nope", messages: MESSAGES }), 404, OpenAI.NotFoundError, "model");
    await expectError("temperature 5",
      () => client.completions.create({ model: "llm", prompt: "hi", temperature: 5 }), 400, OpenAI.BadRequestError, "temperature");
    await expectError("n 0",
      () => client.chat.completions.create({ model: "llm", messages: MESSAGES, n: 0 }), 400, OpenAI.BadRequestError, "n");
    await expectError("max_tokens past the context",
      () => client.completions.create({ model: "llm", prompt: "hi", max_tokens: 100000 }), 400, OpenAI.BadRequestError, "max_tokens");
    await expectError("a streamed request with a bad field",
      async () => { for await (const _ of await client.completions.create({ model: "llm", prompt: "hi", top_p: 0, stream: true })); },
      400, OpenAI.BadRequestError, "top_p");
    if (opt.key) {
      const wrong = new OpenAI({ baseURL: opt.base + "/v1", apiKey: opt.key + "x", maxRetries: 0, timeout: 30_000 });
      await expectError("wrong API key",
        () => wrong.completions.create({ model: "llm", prompt: "hi", max_tokens: 2 }), 401, OpenAI.AuthenticationError, null);
    }
  },
};

let failed = 0;
for (const [name, fn] of Object.entries(cases)) {
  const t0 = Date.now();
  try {
    await fn();
    log(`ok ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed++;
    console.error(`server_openai: FAIL ${name}: ${e.stack || e}`);
  }
}
log(failed ? `${failed} of ${Object.keys(cases).length} failed` : `all ${Object.keys(cases).length} passed`);
process.exit(failed ? 1 : 0);
