#!/usr/bin/env node
// The playground (web/playground.html, served at GET / by `duet serve`) in
// headless Chromium, driven over the DevTools protocol on a pipe
// (--remote-debugging-pipe: NUL-separated JSON on fds 3 and 4), so no
// WebSocket and no npm package is needed.
//
//   node tests/browser/playground.test.mjs [--duet build/duet] [--models models]
//        [--chromium PATH] [--screenshots docs/img] [--phone /tmp/phone.png] [--verbose]
//
// Cases: a duet-spec run shows draft and llm tokens and its text is the
// API's greedy text (in chat mode too: the API's message); side by side (llm
// next to duet-spec, started with Ctrl+Enter) both panes write the same
// greedy text; Stop (the button, then Escape) mid-stream frees the slot and
// counts the request as 499; an unknown profile, and a server with --api-key
// opened without the key, show readable messages (no alert()), and typing
// the key loads the profiles; the controls show a focus ring when reached
// with Tab; at 390 px nothing overflows.
// --screenshots DIR writes DIR/playground.png and
// DIR/playground-side-by-side.png (1100x700; the docs' pictures).
//
// Exit status: 0 pass, 1 fail, 77 skipped (no Chromium: apt-get install chromium).
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const SKIP = 77;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const opt = { duet: path.join(ROOT, "build/duet"), models: path.join(ROOT, "models"), chromium: process.env.CHROMIUM || "",
              screenshots: "", phone: "", verbose: false, timeout: 240 };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i], key = a.replace(/^--/, "");
  if (key === "verbose") opt.verbose = true;
  else if (key in opt && i + 1 < process.argv.length) opt[key] = process.argv[++i];
  else {
    console.error(`usage: playground.test.mjs [--duet BIN] [--models DIR] [--chromium BIN] [--screenshots DIR] [--phone PNG] [--timeout S] [--verbose] (unknown: ${a})`);
    process.exit(2);
  }
}

const log = (...a) => console.log("playground:", ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const children = [];
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "duet-playground-"));

function cleanup() {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  try { fs.rmSync(tmp, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 }); } catch (e) {}
}
process.on("exit", cleanup);
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(1));

function fail(msg) {
  console.error("playground: FAIL: " + msg);
  process.exit(1);
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
  if (opt.verbose) log("ok:", msg);
}

function findChromium() {
  if (opt.chromium) return fs.existsSync(opt.chromium) ? opt.chromium : null;
  for (const name of ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"])
    for (const dir of (process.env.PATH || "").split(":")) {
      const p = path.join(dir || ".", name);
      try { fs.accessSync(p, fs.constants.X_OK); return p; } catch (e) {}
    }
  return null;
}

/* Polls pred() (async) every `every` ms until it returns a truthy value. */
async function waitFor(pred, ms, what, every = 25) {
  const t0 = Date.now();
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`no ${what} within ${ms / 1000} s`);
    await sleep(every);
  }
}

/* ---- duet serve ---------------------------------------------------------------------- */

async function startServer(extra = []) {
  const args = ["serve", "-m", path.join(opt.models, "llm.gguf"), "--draft", path.join(opt.models, "slm-draft.gguf"),
                "--port", "0", "-t", "1", ...extra];
  const p = spawn(opt.duet, args, { stdio: ["ignore", "ignore", "pipe"] });
  children.push(p);
  let err = "";
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("duet serve did not start in 60 s:\n" + err)), 60000);
    p.stderr.on("data", (d) => {
      err += d;
      const m = /listening on (http:\/\/[0-9.]+:\d+)/.exec(err);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    p.on("exit", (code) => { clearTimeout(timer); reject(new Error(`duet serve exited (${code}):\n${err}`)); });
  });
  p.stderr.removeAllListeners("data").resume();
  p.removeAllListeners("exit");
  if (opt.verbose) log("server", url, extra.join(" "));
  return { url, proc: p };
}

async function metrics(base, key) {
  const r = await fetch(base + "/metrics", { headers: key ? { Authorization: "Bearer " + key } : {} });
  const text = await r.text();
  const num = (re) => { const m = re.exec(text); return m ? +m[1] : 0; };
  return {
    busy: num(/^duet_slots_busy (\d+)$/m),
    status: (profile, status) => num(new RegExp(`^duet_requests_total\\{profile="${profile}",status="${status}"\\} (\\d+)$`, "m")),
  };
}

/* The API's answer, not streamed: the text of the first choice. */
async function completion(base, body, chat = false) {
  const url = base + (chat ? "/v1/chat/completions" : "/v1/completions");
  const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const j = await r.json();
  if (!r.ok) throw new Error("POST " + url + ": " + JSON.stringify(j));
  return chat ? j.choices[0].message.content : j.choices[0].text;
}

/* ---- Chromium over the DevTools protocol -------------------------------------------- */

class Browser {
  constructor(exe) {
    const args = ["--headless", "--remote-debugging-pipe", "--user-data-dir=" + path.join(tmp, "profile"),
                  "--no-first-run", "--no-default-browser-check", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-extensions", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--mute-audio", "--hide-scrollbars", "--force-color-profile=srgb",
                  "--font-render-hinting=none", "--window-size=1100,700", "about:blank"];
    if (process.getuid && process.getuid() === 0) args.unshift("--no-sandbox"); /* root has no sandbox */
    this.proc = spawn(exe, args, { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] });
    children.push(this.proc);
    this.stderr = "";
    this.proc.stderr.on("data", (d) => { this.stderr = (this.stderr + d).slice(-8000); });
    this.out = this.proc.stdio[3];
    this.next = 0;
    this.pending = new Map();
    this.handlers = [];
    let buf = Buffer.alloc(0);
    this.proc.stdio[4].on("data", (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      for (let i; (i = buf.indexOf(0)) >= 0; buf = buf.subarray(i + 1)) this.dispatch(JSON.parse(buf.subarray(0, i).toString("utf8")));
    });
    this.proc.on("exit", (code, sig) => {
      for (const p of this.pending.values()) p.reject(new Error(`chromium exited (${code ?? sig}):\n${this.stderr}`));
      this.pending.clear();
    });
  }

  dispatch(msg) {
    if (msg.id !== undefined) {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.error) p.reject(new Error(`${p.method}: ${msg.error.message}`));
      else p.resolve(msg.result);
    } else for (const h of this.handlers) h(msg);
  }

  send(method, params = {}, sessionId = undefined) {
    const id = ++this.next;
    const msg = { id, method, params };
    if (sessionId) msg.sessionId = sessionId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      this.out.write(JSON.stringify(msg) + "\0");
    });
  }

  async newPage() {
    const { targetId } = await this.send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await this.send("Target.attachToTarget", { targetId, flatten: true });
    const page = new Page(this, sessionId);
    await page.init();
    return page;
  }

  async close() {
    try { await Promise.race([this.send("Browser.close"), sleep(3000)]); } catch (e) {}
    if (this.proc.exitCode === null) await Promise.race([new Promise((r) => this.proc.once("exit", r)), sleep(3000)]);
  }
}

class Page {
  constructor(browser, sessionId) {
    this.b = browser;
    this.sid = sessionId;
    this.dialogs = [];
    this.errors = [];
    this.loaded = 0;
    browser.handlers.push((m) => {
      if (m.sessionId !== this.sid) return;
      if (m.method === "Page.loadEventFired") this.loaded++;
      if (m.method === "Page.javascriptDialogOpening") {
        this.dialogs.push(m.params.message);
        this.send("Page.handleJavaScriptDialog", { accept: true }).catch(() => {});
      }
      if (m.method === "Runtime.exceptionThrown") {
        const d = m.params.exceptionDetails;
        this.errors.push((d.exception && d.exception.description) || d.text);
      }
    });
  }

  send(method, params = {}) { return this.b.send(method, params, this.sid); }

  async init() {
    await this.send("Page.enable");
    await this.send("Runtime.enable");
    await this.viewport(1100, 700);
  }

  viewport(width, height, mobile = false) {
    return this.send("Emulation.setDeviceMetricsOverride", { width, height, deviceScaleFactor: 1, mobile });
  }

  async goto(url) {
    const n = this.loaded;
    await this.send("Page.navigate", { url });
    await waitFor(() => this.loaded > n, 15000, "load event of " + url);
  }

  /* Evaluates an expression (a promise is awaited) and returns its value. */
  async eval(expr) {
    const r = await this.send("Runtime.evaluate", { expression: expr, awaitPromise: true, returnByValue: true });
    if (r.exceptionDetails) {
      const d = r.exceptionDetails;
      throw new Error(`page: ${(d.exception && d.exception.description) || d.text} in: ${expr}`);
    }
    return r.result.value;
  }

  async click(selector) {
    const box = await this.eval(`(() => { const e = document.querySelector(${JSON.stringify(selector)});
      if (!e) return null; e.scrollIntoView({ block: "center" }); const r = e.getBoundingClientRect();
      return { x: r.x + r.width / 2, y: r.y + r.height / 2 }; })()`);
    check(box, `${selector} is on the page`);
    await this.send("Input.dispatchMouseEvent", { type: "mouseMoved", x: box.x, y: box.y });
    await this.send("Input.dispatchMouseEvent", { type: "mousePressed", x: box.x, y: box.y, button: "left", clickCount: 1 });
    await this.send("Input.dispatchMouseEvent", { type: "mouseReleased", x: box.x, y: box.y, button: "left", clickCount: 1 });
  }

  /* Moves the mouse onto the element an expression names. */
  async hover(expr) {
    const box = await this.eval(`(() => { const e = ${expr};
      if (!e) return null; const r = e.getClientRects()[0]; return { x: r.x + Math.min(r.width / 2, 8), y: r.y + 2 }; })()`);
    check(box, `${expr} is on the page`);
    await this.send("Input.dispatchMouseEvent", { type: "mouseMoved", x: box.x, y: box.y });
  }

  /* A key press; modifiers: 1 Alt, 2 Ctrl, 4 Meta, 8 Shift. */
  async key(key, code, keyCode, modifiers = 0) {
    const e = { key, code, windowsVirtualKeyCode: keyCode, nativeVirtualKeyCode: keyCode, modifiers };
    await this.send("Input.dispatchKeyEvent", { type: "rawKeyDown", ...e });
    await this.send("Input.dispatchKeyEvent", { type: "keyUp", ...e });
  }

  /* Replaces the text of a field the way typing would (focus, select all, insert). */
  async type(selector, text) {
    await this.click(selector);
    await this.eval(`document.querySelector(${JSON.stringify(selector)}).select()`);
    await this.send("Input.insertText", { text });
    await this.eval(`document.querySelector(${JSON.stringify(selector)}).dispatchEvent(new Event("change"))`);
  }

  /* Sets a select or number field and tells the page, as a user's choice would. */
  async set(selector, value) {
    await this.eval(`(() => { const e = document.querySelector(${JSON.stringify(selector)});
      e.value = ${JSON.stringify(String(value))};
      if (e.value !== ${JSON.stringify(String(value))}) throw new Error(${JSON.stringify(selector)} + " has no value " + ${JSON.stringify(String(value))});
      e.dispatchEvent(new Event("input", { bubbles: true })); e.dispatchEvent(new Event("change", { bubbles: true })); })()`);
  }

  async screenshot(file) {
    const { data } = await this.send("Page.captureScreenshot", { format: "png" });
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, Buffer.from(data, "base64"));
    return fs.statSync(file).size;
  }

  idle() { return this.eval(`document.body.dataset.state === "idle"`); }

  /* What the panes show: name, status, error, text, the token spans' classes and text. */
  panes() {
    return this.eval(`[...document.querySelectorAll(".pane")].map((p) => ({
      name: p.querySelector(".name").textContent, status: p.querySelector(".status").textContent,
      error: p.querySelector(".error").textContent, text: p.dataset.text,
      shown: p.querySelector(".out").textContent, rows: p.querySelectorAll(".acct tr").length,
      origins: [...p.querySelectorAll(".out span.t")].map((s) => [...s.classList].filter((c) => c !== "t")[0] || "") }))`);
  }
}

/* ---- the cases ----------------------------------------------------------------------- */

const PROMPT = "once upon a time, there was a little girl named lily. she loved to play outside";

async function waitIdle(page, ms = 60000) {
  await sleep(50);
  await waitFor(() => page.idle(), ms, "end of the run (body[data-state=idle])");
  return page.panes();
}

async function caseGreedy(page, base) {
  const max = 96;
  await page.type("#prompt", PROMPT);
  await page.set("#mode", "completion");
  await page.set("#profile", "duet-spec");
  await page.set("#profile2", "");
  await page.set("#temp", 0);
  await page.set("#max", max);
  await page.click("#go");
  check(await page.eval(`document.body.dataset.state`) === "running", "the page is running after Generate");
  const [p, ...more] = await waitIdle(page);
  check(more.length === 0, "one pane");
  check(p.name === "duet-spec" && p.status.startsWith("done"), `the pane is done (status: ${p.status}; error: ${p.error})`);
  check(p.origins.includes("draft") && p.origins.includes("llm"),
        `the pane has draft and llm tokens (${[...new Set(p.origins)].join(", ")})`);
  check(p.origins.length === max, `${max} token spans (${p.origins.length})`);
  check(p.shown === p.text, "the spans show the pane's text");
  const api = await completion(base, { model: "duet-spec", prompt: PROMPT, max_tokens: max, temperature: 0, top_p: 1 });
  check(p.text === api, "the pane's text is the API's greedy text" +
        (p.text === api ? "" : `\n  page: ${JSON.stringify(p.text)}\n  api:  ${JSON.stringify(api)}`));
  check(p.rows >= 3, "the accounting table lists the llm and the slm");
  log(`greedy duet-spec: ${p.origins.length} tokens, ${p.origins.filter((o) => o === "draft").length} drafted, text = API's`);
  return api;
}

async function caseSideBySide(page, base, api) {
  await page.set("#profile", "duet-spec");
  await page.set("#profile2", "llm");
  await page.click("#prompt");
  await page.key("Enter", "Enter", 13, 2); /* Ctrl+Enter */
  await waitFor(async () => (await page.eval(`document.querySelectorAll(".pane").length`)) === 2, 5000, "two panes after Ctrl+Enter");
  await page.key("Enter", "Enter", 13, 2); /* again while running: must not start a second run */
  const panes = await waitIdle(page);
  check(panes.length === 2 && panes[0].name === "duet-spec" && panes[1].name === "llm", "panes duet-spec and llm, side by side");
  check(await page.eval(`document.getElementById("panes").classList.contains("two")`), "two columns");
  for (const p of panes) check(p.status.startsWith("done"), `${p.name} is done (${p.status}; ${p.error})`);
  check(panes[1].origins.every((o) => o === "llm"), "the llm pane's tokens are all the LLM's");
  check(panes[0].text === panes[1].text && panes[0].text === api, "greedy duet-spec writes the LLM's own text");
  await sleep(300); /* a second run started by the second Ctrl+Enter would show now */
  check(await page.idle(), "Ctrl+Enter during a run starts nothing");
  log("side by side: duet-spec and llm wrote the same text");
}

async function caseChat(page, base) {
  const max = 32, msg = "tell me a story about a cat.";
  await page.type("#prompt", msg);
  await page.set("#mode", "chat");
  await page.set("#profile", "duet-spec");
  await page.set("#profile2", "");
  await page.set("#max", max);
  await page.click("#go");
  const [p] = await waitIdle(page);
  check(p.status.startsWith("done"), `chat: the pane is done (${p.status}; ${p.error})`);
  const api = await completion(base, { model: "duet-spec", messages: [{ role: "user", content: msg }], max_tokens: max,
                                       temperature: 0, top_p: 1 }, true);
  check(p.text === api && p.shown === api, "chat: the pane's text is the API's greedy message" +
        (p.text === api ? "" : `\n  page: ${JSON.stringify(p.text)}\n  api:  ${JSON.stringify(api)}`));
  await page.set("#mode", "completion");
  await page.type("#prompt", PROMPT);
  log(`chat message: ${p.origins.length} tokens, text = API's`);
}

async function caseStop(page, base, how) {
  const max = 900;
  const before = await metrics(base);
  await page.set("#profile", "duet-spec");
  await page.set("#profile2", "");
  await page.set("#max", max);
  await page.click("#go");
  await waitFor(async () => (await page.eval(`document.querySelectorAll(".out span.t").length`)) >= 8, 30000, "tokens streaming");
  check((await metrics(base)).busy === 1, "a slot is busy while it streams");
  if (how === "button") await page.click("#stop");
  else await page.key("Escape", "Escape", 27);
  const [p] = await waitIdle(page, 10000);
  check(p.status === "stopped", `the pane says stopped (${p.status})`);
  check(p.origins.length < max, `stopped mid-stream (${p.origins.length} of ${max} tokens)`);
  const m = await waitFor(async () => {
    const m = await metrics(base);
    return m.busy === 0 && m.status("duet-spec", "499") === before.status("duet-spec", "499") + 1 && m;
  }, 5000, "duet_slots_busy 0 and one more 499 after Stop");
  check(m.busy === 0, "the slot is free");
  log(`stop (${how}) after ${p.origins.length} tokens: duet_slots_busy 0, duet_requests_total{profile="duet-spec",status="499"} ${m.status("duet-spec", "499")}`);
}

async function caseUnknownProfile(page) {
  await page.eval(`(() => { const o = document.createElement("option"); o.value = o.textContent = "no-such-profile";
                            document.getElementById("profile").appendChild(o); })()`);
  await page.set("#profile", "no-such-profile");
  await page.set("#max", 8);
  await page.click("#go");
  const [p] = await waitIdle(page, 10000);
  check(p.status === "error", `status error (${p.status})`);
  check(/no-such-profile/.test(p.error) && /does not exist/.test(p.error) && /duet-spec/.test(p.error),
        `a readable message names the profile and the known ones (${p.error})`);
  await page.eval(`document.querySelector('#profile option[value="no-such-profile"]').remove()`);
  log("unknown profile:", JSON.stringify(p.error));
}

async function caseApiKey(page) {
  const key = "s3cret-playground";
  const { url, proc } = await startServer(["--api-key", key, "--slots", "1"]);
  await page.goto(url + "/");
  const msg = await waitFor(() => page.eval(`document.getElementById("msg") && document.getElementById("msg").textContent`),
                            5000, "a message that the profiles cannot be listed");
  check(page.dialogs.length === 0, `no alert() dialog (${page.dialogs.join(" | ")})`);
  check(/API key/.test(msg), `the page says an API key is needed (${msg})`);
  check(await page.eval(`getComputedStyle(document.getElementById("msg")).display !== "none"`), "the message is visible");
  await page.set("#max", 8);
  await page.click("#go");
  let [p] = await waitIdle(page, 10000);
  check(p.status === "error" && /API key/.test(p.error), `Generate without the key: readable 401 message (${p.error})`);
  log("no API key:", JSON.stringify(msg), "/", JSON.stringify(p.error));
  await page.type("#key", key);
  await waitFor(() => page.eval(`document.getElementById("profile").value === "duet-spec"`), 5000, "profiles after typing the key");
  check(await page.eval(`document.getElementById("msg").textContent === ""`), "the message goes once the key works");
  await page.click("#go");
  [p] = await waitIdle(page, 30000);
  check(p.status.startsWith("done") && p.origins.length === 8, `with the key it generates (${p.status}; ${p.error})`);
  proc.kill("SIGTERM");
  log("API key typed: profiles loaded, generation done");
}

async function caseFocus(page) {
  await page.click("#prompt");
  const seen = [];
  for (let i = 0; i < 12; i++) {
    await page.key("Tab", "Tab", 9);
    const f = await page.eval(`(() => { const e = document.activeElement, s = getComputedStyle(e);
      return { id: e.id, outline: s.outlineStyle !== "none" && parseFloat(s.outlineWidth) >= 1 }; })()`);
    seen.push(f.id);
    check(f.outline, `#${f.id} shows a focus ring when reached with Tab`);
    if (f.id === "go") break;
  }
  check(seen.at(-1) === "go", `Tab reaches Generate (${seen.join(" ")})`);
  log("focus ring on", seen.join(", "));
}

async function casePhone(page, base) {
  await page.viewport(390, 844, true);
  await page.goto(base + "/");
  await waitFor(() => page.eval(`document.getElementById("profile").options.length > 0`), 5000, "profiles");
  await page.set("#profile", "duet-spec");
  await page.set("#profile2", "llm");
  await page.set("#max", 48);
  await page.click("#go");
  await waitIdle(page);
  const o = await page.eval(`(() => ({ sw: document.documentElement.scrollWidth, w: innerWidth,
    wide: [...document.querySelectorAll("textarea, select, input, button, .pane")].filter((e) => e.getBoundingClientRect().right > innerWidth + 0.5).map((e) => e.id || e.className),
    cols: getComputedStyle(document.getElementById("panes")).gridTemplateColumns.split(" ").length }))()`);
  check(o.sw <= o.w, `no horizontal scrolling at 390 px (content ${o.sw} px)`);
  check(o.wide.length === 0, `every control fits at 390 px (${o.wide.join(", ")})`);
  check(o.cols === 1, "side by side becomes one column on a phone");
  const file = opt.phone || path.join(tmp, "phone.png");
  const size = await page.screenshot(file);
  log(`390 px: fits; ${opt.phone ? "screenshot " + file + " (" + size + " bytes)" : "screenshot taken"}`);
  await page.viewport(1100, 700);
}

async function screenshots(page, base) {
  const dir = opt.screenshots;
  if (!dir) return;
  await page.goto(base + "/");
  await waitFor(() => page.eval(`document.getElementById("profile").options.length > 0`), 5000, "profiles");
  await page.set("#profile", "duet-spec");
  await page.set("#max", 96);
  await page.click("#go");
  await waitIdle(page);
  /* a drafted token's tooltip, over the blank line of a paragraph break if there is one */
  await page.hover(`(() => { const t = [...document.querySelectorAll(".out span.t")], nl = t.findIndex((s) => s.textContent.includes("\\n"));
    return t.slice(0, nl < 0 ? t.length : nl).reverse().find((s) => s.classList.contains("draft") && s.textContent.trim()); })()`);
  await sleep(100);
  let size = await page.screenshot(path.join(dir, "playground.png"));
  log(`wrote ${path.join(dir, "playground.png")} (${size} bytes)`);
  await page.send("Input.dispatchMouseEvent", { type: "mouseMoved", x: 1, y: 1 });
  await page.set("#profile2", "llm");
  await page.click("#go");
  await waitIdle(page);
  await page.send("Input.dispatchMouseEvent", { type: "mouseMoved", x: 1, y: 1 });
  await page.eval(`document.activeElement.blur()`);
  size = await page.screenshot(path.join(dir, "playground-side-by-side.png"));
  log(`wrote ${path.join(dir, "playground-side-by-side.png")} (${size} bytes)`);
}

async function main() {
  const exe = findChromium();
  if (!exe) {
    console.log("SKIP: no Chromium (chromium, chromium-browser or google-chrome on PATH, or --chromium/$CHROMIUM); " +
                "install it with `apt-get install chromium`");
    process.exit(SKIP);
  }
  for (const f of [opt.duet, path.join(opt.models, "llm.gguf"), path.join(opt.models, "slm-draft.gguf")])
    if (!fs.existsSync(f)) fail(`${f} is missing`);
  const watchdog = setTimeout(() => fail(`the test ran past ${opt.timeout} s`), opt.timeout * 1000);
  const { url: base } = await startServer(["--ctx", "1024"]);
  const browser = new Browser(exe);
  const page = await browser.newPage();
  const version = await browser.send("Browser.getVersion");
  log(`${version.product}, ${base}`);
  try {
    await page.goto(base + "/");
    await waitFor(() => page.eval(`document.getElementById("profile").value === "duet-spec"`), 5000, "profiles from /v1/models");
    const listed = await page.eval(`[...document.getElementById("profile").options].map((o) => o.value).join(" ")`);
    const ids = (await (await fetch(base + "/v1/models")).json()).data.map((m) => m.id).join(" ");
    check(listed === ids && /^llm slm duet-spec duet-spec-ngram\b/.test(listed), `the profiles of /v1/models are listed (${listed})`);
    const api = await caseGreedy(page, base);
    await caseSideBySide(page, base, api);
    await caseChat(page, base);
    await caseStop(page, base, "button");
    await caseStop(page, base, "Escape");
    await caseUnknownProfile(page);
    await caseFocus(page);
    await casePhone(page, base);
    await screenshots(page, base);
    await caseApiKey(page);
    check(page.dialogs.length === 0, `no dialogs (${page.dialogs.join(" | ")})`);
    check(page.errors.length === 0, `no uncaught errors in the page (${page.errors.join(" | ")})`);
  } catch (e) {
    let shot = "";
    try { shot = path.join(os.tmpdir(), "duet-playground-failure.png"); await page.screenshot(shot); } catch (e2) { shot = ""; }
    fail(e.message + (shot ? `\n(screenshot of the page: ${shot})` : "") +
         (page.errors.length ? "\npage errors: " + page.errors.join(" | ") : ""));
  }
  await browser.close();
  clearTimeout(watchdog);
  log("PASS");
  process.exit(0);
}

main().catch((e) => fail(e.stack || String(e)));
