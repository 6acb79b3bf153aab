#!/usr/bin/env python3
"""The cost of each fusion strategy against the LLM alone: `duet generate`
(one request, greedy, --ignore-eos, N new tokens) for every strategy on the
same prompt one right after another, prompt after prompt, --rounds times, so
that each ratio compares runs seconds apart on the same (shared) CPUs. Per
strategy: the median decode tokens/s and the median of the per-prompt ratios
to the LLM alone.

usage: cost.py --duet build/duet --llm M --slm M --slm-tuned M --prompts FILE [--n 64] [--count 8] [--rounds 2] [-t 2]
"""
import argparse
import json
import statistics
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duet", required=True)
    ap.add_argument("--llm", required=True)
    ap.add_argument("--slm", required=True)
    ap.add_argument("--slm-tuned", required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("-t", type=int, default=2)
    a = ap.parse_args()
    fuse = ["--slm", a.slm]
    strategies = [
        ("llm", ["-m", a.llm]),
        ("slm", ["-m", a.slm]),
        ("mix", ["-m", a.llm, "--strategy", "mix", "--weight", "0.5"] + fuse),
        ("poe", ["-m", a.llm, "--strategy", "poe", "--weight", "0.5"] + fuse),
        ("cd", ["-m", a.llm, "--strategy", "cd"] + fuse),
        ("proxy", ["-m", a.llm, "--strategy", "proxy", "--slm-tuned", a.slm_tuned] + fuse),
    ]
    prompts = [l.rstrip("\n") for l in open(a.prompts, encoding="utf-8") if l.strip()][:a.count]
    tok_s = {name: [] for name, _ in strategies}
    ratio = {name: [] for name, _ in strategies}
    for rnd in range(a.rounds):
        for p in prompts:
            got = {}
            for name, args in strategies:
                cmd = [a.duet, "generate"] + args + ["-p", p, "-n", str(a.n), "--temp", "0", "--ignore-eos",
                                                     "-t", str(a.t), "--json"]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                st = json.loads(out)["stats"]
                got[name] = st["decode_tok_s"]
                tok_s[name].append(st["decode_tok_s"])
            for name in got:
                ratio[name].append(got[name] / got["llm"])
    res = {"prompts": len(prompts), "rounds": a.rounds, "new_tokens": a.n, "threads": a.t, "strategies": []}
    for name, args in strategies:
        res["strategies"].append({"strategy": name, "args": " ".join(args).replace(a.llm, "LLM")
                                  .replace(a.slm_tuned, "TUNED").replace(a.slm, "SLM"),
                                  "median_tok_s": statistics.median(tok_s[name]),
                                  "median_ratio_vs_llm": statistics.median(ratio[name]),
                                  "runs": len(tok_s[name])})
    json.dump(res, sys.stdout)
    print()


if __name__ == "__main__":
    sys.exit(main())
