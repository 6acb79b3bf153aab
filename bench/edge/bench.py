#!/usr/bin/env python3
"""bench/edge: the edge-cloud grid. duet serve holds the LLM (every forward
pass made to last --forward-delay-ms: a large model on a busy server), a
delaying proxy (delay_proxy.py) adds the round trip, and `duet generate` on
the "device" runs each way of answering:

  local     the SLM alone on the device (no network; the same in every cell)
  remote    the remote LLM alone, its own streamed generation
  auto      --draft SLM --policy auto: the round-trip-aware choice
  spec      --draft SLM --policy spec: remote speculative decoding always
  cascade   --strategy cascade: the SLM answers, the remote LLM's stream when unsure

Per run: tokens/s (generated / run seconds), time to first token (both from
the CLI's --json ttft_s and total_s, measured from the start of the run, not
counting model loading), the server's forward passes (duet_forward_passes_total
before and after, read from the server directly) per generated token, and the
ids. Prints one JSON object (written by run.sh to results.json).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

PROMPTS = [
    "once upon a time",
    "tom and sue went to the park",
    "the little dog",
    "one day, a girl named mia found a box",
    "the sun was hot and the birds",
]


def metric(url, name):
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise RuntimeError(f"{name} not in {url}/metrics")


def start_server(duet, llm, delay_ms, threads):
    p = subprocess.Popen([duet, "serve", "-m", llm, "--port", "0", "-t", str(threads), "--slots", "2",
                          "--forward-delay-ms", str(delay_ms)], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        if "listening on http://" in line:
            port = int(line.split("listening on http://127.0.0.1:")[1].split()[0])
            # keep draining stderr so the server never blocks on a full pipe
            import threading
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, f"http://127.0.0.1:{port}"
    p.kill()
    raise RuntimeError("duet serve did not start")


def start_proxy(here, target, rtt_ms):
    fd, port_file = tempfile.mkstemp(prefix="duet_edge_port_")
    os.close(fd)
    os.unlink(port_file)
    p = subprocess.Popen([sys.executable, os.path.join(here, "delay_proxy.py"), "--listen", "0", "--target",
                          target.replace("http://", ""), "--rtt-ms", str(rtt_ms), "--port-file", port_file])
    deadline = time.time() + 10
    while time.time() < deadline and not os.path.exists(port_file):
        time.sleep(0.05)
    if not os.path.exists(port_file):
        p.kill()
        raise RuntimeError("the proxy did not start")
    with open(port_file) as f:
        port = int(f.read())
    os.unlink(port_file)
    return p, f"http://127.0.0.1:{port}"


def stop(p):
    p.terminate()
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def run_cli(duet, args, timeout):
    t0 = time.time()
    r = subprocess.run([duet, "generate"] + args, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"duet generate {' '.join(args)} failed ({r.returncode}): {r.stderr[-400:]}")
    o = json.loads(r.stdout)
    o["wall_s"] = time.time() - t0
    return o


def record(o, passes=None):
    s = o["stats"]
    n = s["n_generated"]
    rec = {"n": n, "ttft_s": s["ttft_s"], "total_s": s["total_s"],
           "tok_s": n / s["total_s"] if s["total_s"] > 0 else 0, "ids": o["ids"]}
    if passes is not None:
        rec["passes"] = passes
        rec["passes_per_token"] = passes / n if n else 0
    for key in ("policy", "answered_by", "degraded", "rounds", "acceptance_rate"):
        if key in s:
            rec[key] = s[key]
    return rec


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser()
    ap.add_argument("--duet", default=os.path.join(root, "build", "duet"))
    ap.add_argument("--llm", default=os.path.join(root, "models", "llm.gguf"))
    ap.add_argument("--slm", default=os.path.join(root, "models", "slm-draft.gguf"))
    ap.add_argument("--rtts", default="0,20,80")
    ap.add_argument("--delays", default="5,20,50")
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("-n", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2, help="runs of each prompt and way (medians over all)")
    ap.add_argument("--threshold", default="-0.45", help="cascade: escalate below this mean log-probability")
    ap.add_argument("-t", "--threads", type=int, default=1)
    ap.add_argument("--budget-s", type=float, default=480, help="stop starting cells after this long")
    a = ap.parse_args()
    if not 1 <= a.prompts <= len(PROMPTS):
        sys.exit(f"--prompts must be in 1..{len(PROMPTS)}")
    prompts = PROMPTS[:a.prompts]
    rtts = [float(x) for x in a.rtts.split(",")]
    delays = [float(x) for x in a.delays.split(",")]
    t_start = time.time()
    common = ["--temp", "0", "-n", str(a.n), "--ignore-eos", "--json", "-t", str(a.threads)]
    out = {"config": {"llm": os.path.basename(a.llm), "slm": os.path.basename(a.slm), "n": a.n, "prompts": prompts,
                      "rtts_ms": rtts, "delays_ms": delays, "threads": a.threads, "repeats": a.repeats, "cascade_threshold": a.threshold},
           "local": [], "cells": [], "complete": True}
    for p in prompts:
        out["local"].append(record(run_cli(a.duet, ["-m", a.slm, "-p", p] + common, 60)))
    modes = {
        "remote": lambda url: ["-m", a.slm, "--remote", url],
        "auto": lambda url: ["-m", a.slm, "--draft", a.slm, "--remote", url, "--policy", "auto"],
        "spec": lambda url: ["-m", a.slm, "--draft", a.slm, "--remote", url, "--policy", "spec"],
        "cascade": lambda url: ["-m", a.slm, "--strategy", "cascade", "--threshold", a.threshold, "--remote", url],
    }
    for delay in delays:
        server, direct = start_server(a.duet, a.llm, delay, a.threads)
        try:
            for rtt in rtts:
                if time.time() - t_start > a.budget_s:
                    out["complete"] = False
                    print(f"bench/edge: budget of {a.budget_s:.0f} s spent; cell rtt {rtt} delay {delay} skipped",
                          file=sys.stderr)
                    continue
                proxy, url = start_proxy(here, direct, rtt)
                cell = {"rtt_ms": rtt, "delay_ms": delay, "runs": {m: [] for m in modes}}
                try:
                    # the ways interleaved, prompt by prompt, so a change of load on the
                    # machine falls on all of them alike
                    for rep in range(a.repeats):
                        for p in prompts:
                            for m, args in modes.items():
                                before = metric(direct, "duet_forward_passes_total")
                                o = run_cli(a.duet, args(url) + ["-p", p] + common, 120)
                                # the server counts a pass when it ends; wait for a stream's last one
                                time.sleep(0.05 + delay / 1000)
                                passes = metric(direct, "duet_forward_passes_total") - before
                                r = record(o, passes)
                                r["prompt"], r["repeat"] = prompts.index(p), rep
                                cell["runs"][m].append(r)
                finally:
                    stop(proxy)
                out["cells"].append(cell)
                print(f"bench/edge: rtt {rtt:g} ms, pass {delay:g} ms done ({time.time() - t_start:.0f} s)",
                      file=sys.stderr)
        finally:
            stop(server)
    out["elapsed_s"] = time.time() - t_start
    print(json.dumps(out))


if __name__ == "__main__":
    main()
