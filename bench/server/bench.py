#!/usr/bin/env python3
"""bench/server: concurrent streaming clients against duet serve and llama-server.

For each client count C (outer loop) and each server (inner loop, so the
servers are interleaved in time) this starts ONE server on 127.0.0.1, waits for
/health, sends one warm-up request, reads the server's RSS, then runs C client
threads for DURATION seconds, reads the RSS again and stops the server (SIGTERM).

Each client loops over story prompts (the first sentence of each paragraph of
valid.txt, client i starting at a different offset) and sends a streaming
POST /v1/completions:
    {"model": PROFILE, "prompt": P, "max_tokens": 128, "temperature": 0,
     "stream": true, "ignore_eos": true, "stream_options": {"include_usage": true}}
reading the server-sent events until `data: [DONE]`. A client starts a new
request only while the run's time is not over and it has sent fewer than
MAX_REQUESTS; the request in flight at the deadline is finished and counted.

Per request:
  failed       any exception (connect, socket timeout, broken stream), a non-200
               status, an `error` object in the stream, finish_reason "error", or
               EOF before [DONE]
  tokens       usage.completion_tokens when the server sends usage; else
               max_tokens when finish_reason is "length"; else the number of
               events that carried text (the method used is recorded per run)
  ttft         request sent -> first event whose text is non-empty
  per-token    (t_last - t_first) / (tokens - 1), t_first/t_last the arrival
               times of the first/last events with non-empty text
Per run: aggregate tok/s = tokens of the completed requests / (first request
sent -> last request finished); p50/p99 of ttft and per-token (nearest rank: with
fewer than 100 requests, p99 is the maximum); VmRSS of the server process from
/proc/PID/status after the warm-up ("before") and after the load ("after"),
plus VmHWM (peak) after.

The texts of the first completion of each prompt are kept (DIR/outputs/) and
compared with duet llm at the same client count (temperature 0: duet-spec is
lossless, so it should match exactly; llama-server may differ in rare near-ties).

Stdlib only: http.client + threading. The clients share the machine's CPUs with
the server; a Python client costs little next to decoding, but on a 2-core
machine it is not nothing, and it is the same for every server.
"""
import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time


def log(*a):
    print("bench/server:", *a, file=sys.stderr, flush=True)


# ---- prompts -----------------------------------------------------------------------------

def story_prompts(path, limit):
    """The first sentence of each paragraph of valid.txt (20..300 characters), distinct."""
    text = open(path, encoding="utf-8", errors="replace").read()
    out, seen = [], set()
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        m = re.match(r"(.+?[.!?])(\s|$)", para)
        s = m.group(1) if m else para
        if 20 <= len(s) <= 300 and s not in seen:
            seen.add(s)
            out.append(s)
            if len(out) >= limit:
                break
    return out


# ---- statistics ----------------------------------------------------------------------------

def pct(xs, p):
    """Nearest-rank percentile (p in 0..100) of a list; None when empty."""
    if not xs:
        return None
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))  # ceil(p/100*n) - 1
    return s[k]


def rss_kib(pid):
    """VmRSS and VmHWM (KiB) of a process, from /proc/PID/status."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out.get("VmRSS"), out.get("VmHWM")


# ---- one streaming request --------------------------------------------------------------------

def stream_request(host, port, body, timeout):
    """Sends one streaming completion; returns a dict describing it (never raises)."""
    r = {"ok": False, "tokens": 0, "count": None, "events": 0, "text": "", "finish": None, "error": None,
         "ttft": None, "tpot": None, "t0": time.monotonic(), "t1": None, "drafted": 0, "accepted": 0,
         "srv_ttft": None, "srv_queue": None}
    t_first = t_last = None
    n_text_events = 0
    usage_tokens = None
    conn = None
    try:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        payload = json.dumps(body).encode()
        r["t0"] = time.monotonic()
        conn.request("POST", "/v1/completions", body=payload,
                     headers={"Content-Type": "application/json", "Accept": "text/event-stream"})
        resp = conn.getresponse()
        if resp.status != 200:
            r["error"] = f"HTTP {resp.status}: {resp.read(300).decode(errors='replace').strip()}"
            return r
        done = False
        texts = []
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                break
            now = time.monotonic()
            ev = json.loads(data)
            r["events"] += 1
            if "error" in ev:
                r["error"] = "error event: " + json.dumps(ev["error"])[:300]
                return r
            for ch in ev.get("choices") or []:
                t = ch.get("text")
                if t is None:  # chat-style delta, just in case
                    t = (ch.get("delta") or {}).get("content") or ""
                if t:
                    texts.append(t)
                    n_text_events += 1
                    if t_first is None:
                        t_first = now
                    t_last = now
                if ch.get("finish_reason"):
                    r["finish"] = ch["finish_reason"]
            u = ev.get("usage")
            if isinstance(u, dict) and isinstance(u.get("completion_tokens"), int):
                usage_tokens = u["completion_tokens"]
            du = ev.get("duet")
            if isinstance(du, dict) and "drafted" in du and not ev.get("choices"):  # the usage chunk's accounting
                r["drafted"] = du.get("drafted") or 0
                r["accepted"] = du.get("accepted") or 0
                tm = du.get("timings") or {}
                r["srv_ttft"], r["srv_queue"] = tm.get("time_to_first_token_s"), tm.get("queue_s")
        r["t1"] = time.monotonic()
        r["text"] = "".join(texts)
        if not done:
            r["error"] = "stream ended before [DONE]"
            return r
        if r["finish"] == "error":
            r["error"] = "finish_reason error"
            return r
        if usage_tokens is not None:
            r["tokens"], r["count"] = usage_tokens, "usage"
        elif r["finish"] == "length":
            r["tokens"], r["count"] = body["max_tokens"], "max_tokens"
        else:
            r["tokens"], r["count"] = n_text_events, "events"
        if t_first is not None:
            r["ttft"] = t_first - r["t0"]
            if r["tokens"] > 1:
                r["tpot"] = (t_last - t_first) / (r["tokens"] - 1)
        r["ok"] = True
        return r
    except Exception as e:  # noqa: BLE001 - every failure is counted, not raised
        r["error"] = f"{type(e).__name__}: {e}"
        r["t1"] = time.monotonic()
        return r
    finally:
        if conn is not None:
            conn.close()


# ---- servers ------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get_status(port, path, timeout=2.0):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", path)
        st = c.getresponse().status
        c.close()
        return st
    except Exception:  # noqa: BLE001
        return None


def cpu_simd():
    """The AVX-family flags of this CPU, for messages."""
    try:
        flags = next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split()
    except (OSError, StopIteration):
        return "flags unknown"
    avx = sorted(f for f in flags if f.startswith("avx"))
    return "CPU flags: " + (" ".join(avx) or "no avx") + ("" if "avx512f" in flags else "; no avx512f")


def signame(rc):
    if rc is not None and rc < 0:
        try:
            return f"signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"signal {-rc}"
    return f"exit {rc}"


class Server:
    """One server process: start (port, /health), pid, stop."""

    def __init__(self, spec, args, logpath):
        self.spec, self.args, self.logpath = spec, args, logpath
        self.proc, self.port, self.cmd, self.tail = None, None, None, None

    def start(self, timeout=180.0):
        a, kind = self.args, self.spec["kind"]
        if kind == "duet":
            self.cmd = [a.duet, "serve", "-m", a.model, "--host", "127.0.0.1", "--port", "0", "-t", str(a.threads),
                        "--slots", str(a.slots), "--ctx", str(a.ctx)]
            if self.spec.get("draft"):
                self.cmd += ["--draft", a.draft]
        else:
            self.port = free_port()
            self.cmd = [a.llama_server, "-m", a.model, "--host", "127.0.0.1", "--port", str(self.port),
                        "-t", str(a.threads), "-np", str(a.slots), "-c", str(a.slots * a.ctx), "--no-webui"]
        self.logf = open(self.logpath, "w")
        self.proc = subprocess.Popen(self.cmd, stdout=self.logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            rc = self.proc.poll()
            if rc is not None:
                msg = f"exited before it was ready ({signame(rc)}); log {self.logpath}"
                if rc == -signal.SIGILL:
                    msg += ": illegal instruction, the binary uses instructions this CPU lacks (" + cpu_simd() + ")"
                self.tail = self.log_tail()
                return msg
            if self.port is None:  # duet: the port it bound, from its log
                m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", open(self.logpath, errors="replace").read())
                if m:
                    self.port = int(m.group(1))
            if self.port is not None and http_get_status(self.port, "/health") == 200:
                return None
            time.sleep(0.2)
        self.stop()
        return f"not ready after {timeout:.0f} s; log {self.logpath}"

    def log_tail(self, n=3):
        try:
            lines = [l.strip() for l in open(self.logpath, errors="replace").read().splitlines() if l.strip()]
            return " | ".join(lines[-n:])
        except OSError:
            return ""

    def stop(self, grace=15.0):
        """SIGTERM, then SIGKILL after `grace` seconds; returns how it ended."""
        if self.proc is None:
            return None
        info = {}
        if self.proc.poll() is not None:
            info["died_during_run"] = signame(self.proc.returncode)
        else:
            t = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                info["sigterm_hang"] = f"still running {grace:.0f} s after SIGTERM: killed"
                self.proc.kill()
                self.proc.wait()
            info["stop_s"] = round(time.monotonic() - t, 3)
        info["exit"] = signame(self.proc.returncode)
        self.logf.close()
        self.proc = None
        return info


# ---- one run ---------------------------------------------------------------------------------------

def run_load(port, spec, args, prompts, n_clients):
    results, lock = [], threading.Lock()
    t_start = time.monotonic()
    deadline = t_start + args.duration

    def client(ci):
        k = (ci * len(prompts)) // max(1, n_clients)
        for _ in range(args.max_requests):
            if time.monotonic() >= deadline:
                break
            pi = k % len(prompts)
            k += 1
            body = {"model": spec["profile"], "prompt": prompts[pi], "max_tokens": args.max_tokens,
                    "temperature": 0, "stream": True, "ignore_eos": True,
                    "stream_options": {"include_usage": True}}
            r = stream_request("127.0.0.1", port, body, args.request_timeout)
            r["prompt"] = pi
            with lock:
                results.append(r)

    th = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n_clients)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    wall = time.monotonic() - t_start
    return results, wall


def summarize(results, wall, args):
    ok = [r for r in results if r["ok"]]
    bad = [r for r in results if not r["ok"]]
    tokens = sum(r["tokens"] for r in ok)
    ttft = [r["ttft"] for r in ok if r["ttft"] is not None]
    tpot = [r["tpot"] for r in ok if r["tpot"] is not None]
    methods = sorted({r["count"] for r in ok})
    errs = {}
    for r in bad:
        errs[r["error"]] = errs.get(r["error"], 0) + 1
    drafted = sum(r["drafted"] for r in ok)
    accepted = sum(r["accepted"] for r in ok)
    s = {
        "completed": len(ok), "failed": len(bad), "errors": [{"error": e, "count": n} for e, n in errs.items()][:10],
        "tokens": tokens, "wall_s": round(wall, 3), "tok_s": tokens / wall if wall > 0 else 0.0,
        "ttft_p50_s": pct(ttft, 50), "ttft_p99_s": pct(ttft, 99), "ttft_max_s": max(ttft) if ttft else None,
        "tpot_p50_s": pct(tpot, 50), "tpot_p99_s": pct(tpot, 99),
        "token_count": "+".join(methods) if methods else None,
        "short_requests": sum(1 for r in ok if r["tokens"] != args.max_tokens),
        "events_per_request": (sum(r["events"] for r in ok) / len(ok)) if ok else None,
    }
    if drafted:
        s["acceptance"] = accepted / drafted
    srv_ttft = [r["srv_ttft"] for r in ok if r["srv_ttft"] is not None]
    if srv_ttft:  # duet's own account (queue + prefill + first step), to compare with the client's
        s["server_ttft_p50_s"], s["server_ttft_p99_s"] = pct(srv_ttft, 50), pct(srv_ttft, 99)
        s["server_queue_p99_s"] = pct([r["srv_queue"] for r in ok if r["srv_queue"] is not None], 99)
    return s


# ---- main ---------------------------------------------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVERS = {
    "llm": {"label": "duet llm", "kind": "duet", "profile": "llm", "draft": False},
    "duet-spec": {"label": "duet duet-spec", "kind": "duet", "profile": "duet-spec", "draft": True},
    "llama": {"label": "llama-server", "kind": "llama", "profile": "llm"},
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duet", required=True)
    ap.add_argument("--llama-server", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--draft", required=True)
    ap.add_argument("--valid", required=True)
    ap.add_argument("--clients", default="1 4 16")
    ap.add_argument("--servers", default="llm duet-spec llama")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--slots", type=int, default=0, help="0: the largest client count")
    ap.add_argument("--ctx", type=int, default=512, help="context per slot")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--max-requests", type=int, default=1000, help="per client and run")
    ap.add_argument("--request-timeout", type=float, default=300.0, help="socket timeout of one request (s)")
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    clients = [int(x) for x in args.clients.replace(",", " ").split()]
    servers = args.servers.replace(",", " ").split()
    for s in servers:
        if s not in SERVERS:
            sys.exit(f"bench/server: unknown server '{s}' (llm, duet-spec, llama)")
    if args.slots <= 0:
        args.slots = max(clients)
    os.makedirs(os.path.join(args.out, "logs"), exist_ok=True)
    os.makedirs(os.path.join(args.out, "outputs"), exist_ok=True)
    prompts = story_prompts(args.valid, args.prompts)
    if not prompts:
        sys.exit(f"bench/server: no prompts in {args.valid}")

    cpu_model = ""
    try:
        cpu_model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    res = {
        "model": os.path.relpath(args.model, ROOT), "draft": os.path.relpath(args.draft, ROOT), "threads": args.threads,
        "slots": args.slots, "ctx_per_slot": args.ctx, "duration_s": args.duration, "max_tokens": args.max_tokens,
        "max_requests_per_client": args.max_requests, "clients": clients, "prompts": len(prompts),
        "host": {"cpus": os.cpu_count(), "cpu_model": cpu_model, "loadavg_start": os.getloadavg()},
        "servers": {}, "runs": [],
    }
    current = []  # the running server, stopped if this script is interrupted

    def on_term(sig, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        run_all(args, res, clients, servers, prompts, current)
    finally:
        for srv in current:
            srv.stop(grace=5.0)
    res["host"]["loadavg_end"] = os.getloadavg()
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)


def run_all(args, res, clients, servers, prompts, current):
    unavailable = {}
    first_texts = {}  # (server, clients) -> {prompt index: text}
    for c in clients:
        for sname in servers:
            spec = SERVERS[sname]
            rec = {"server": sname, "label": spec["label"], "profile": spec["profile"], "clients": c}
            if sname in unavailable:
                rec["skipped"] = unavailable[sname]
                res["runs"].append(rec)
                continue
            logpath = os.path.join(args.out, "logs", f"{sname}-c{c}.log")
            srv = Server(spec, args, logpath)
            current[:] = [srv]
            log(f"{spec['label']}, {c} client(s): starting")
            err = srv.start()
            res["servers"].setdefault(sname, {"label": spec["label"], "cmd": " ".join(srv.cmd)})
            if err:
                log(f"{spec['label']}: {err}" + (f"; its last lines: {srv.tail}" if srv.tail else ""))
                rec["skipped"] = err
                res["servers"][sname]["error"] = err
                if srv.tail:
                    res["servers"][sname]["log_tail"] = srv.tail
                # a server that dies on start (e.g. SIGILL) will die again: skip its other runs
                unavailable[sname] = f"failed to start at {c} client(s): {err}"
                res["runs"].append(rec)
                continue
            warm = stream_request("127.0.0.1", srv.port,
                                  {"model": spec["profile"], "prompt": prompts[0], "max_tokens": 16, "temperature": 0,
                                   "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}},
                                  args.request_timeout)
            rec["warmup_ok"] = warm["ok"]
            if not warm["ok"]:
                rec["warmup_error"] = warm["error"]
            pid = srv.proc.pid
            rec["rss_before_kib"], _ = rss_kib(pid)
            results, wall = run_load(srv.port, spec, args, prompts, c)
            rec["rss_after_kib"], rec["hwm_after_kib"] = rss_kib(pid)
            rec["health_after"] = http_get_status(srv.port, "/health")
            rec.update(summarize(results, wall, args))
            rec["server_stop"] = srv.stop()
            current.clear()
            texts = {}
            for r in sorted(results, key=lambda r: r["t0"]):
                if r["ok"] and r["prompt"] not in texts:
                    texts[r["prompt"]] = r["text"]
            first_texts[(sname, c)] = texts
            with open(os.path.join(args.out, "outputs", f"{sname}-c{c}.json"), "w") as f:
                json.dump({str(k): v for k, v in sorted(texts.items())}, f, indent=0)
            log(f"{spec['label']}, {c} client(s): {rec['completed']} done, {rec['failed']} failed, "
                f"{rec['tok_s']:.1f} tok/s, RSS {rec['rss_before_kib']} -> {rec['rss_after_kib']} KiB")
            res["runs"].append(rec)

    # derived: ratios, output agreement, goals
    by = {(r["server"], r["clients"]): r for r in res["runs"] if "tok_s" in r}
    for r in res["runs"]:
        if "tok_s" not in r:
            continue
        one = by.get((r["server"], 1))
        if one and one["tok_s"] > 0:
            r["vs_1_client"] = r["tok_s"] / one["tok_s"]
        ll = by.get(("llama", r["clients"]))
        if ll and ll["tok_s"] > 0:
            r["vs_llama_server"] = r["tok_s"] / ll["tok_s"]
        ref = first_texts.get(("llm", r["clients"]))
        mine = first_texts.get((r["server"], r["clients"]))
        if r["server"] != "llm" and ref and mine:
            common = [k for k in mine if k in ref]
            if common:
                r["outputs_same_as_duet_llm"] = sum(1 for k in common if mine[k] == ref[k]) / len(common)
                r["outputs_compared"] = len(common)
    goals = []
    for s in ("llm", "duet-spec"):
        if s not in servers:
            continue
        one, four, sixteen = by.get((s, 1)), by.get((s, 4)), by.get((s, 16))
        g = {"server": s, "label": SERVERS[s]["label"]}
        if one and four:
            g["x4_vs_x1"] = four["tok_s"] / one["tok_s"] if one["tok_s"] else None
            g["x4_vs_x1_ge_2.5"] = bool(g["x4_vs_x1"] is not None and g["x4_vs_x1"] >= 2.5)
        for c, run in ((4, four), (16, sixteen)):
            ll = by.get(("llama", c))
            if run and ll:
                g[f"above_llama_at_{c}"] = run["tok_s"] > ll["tok_s"]
            elif run:
                g[f"above_llama_at_{c}"] = None  # llama-server not measured
        if sixteen and sixteen["ttft_p99_s"] is not None:
            g["ttft_p99_at_16_s"] = sixteen["ttft_p99_s"]
            g["ttft_p99_at_16_lt_1s"] = sixteen["ttft_p99_s"] < 1.0
        goals.append(g)
    res["goals"] = goals


if __name__ == "__main__":
    main()
