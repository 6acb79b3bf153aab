#!/usr/bin/env python3
"""Contrastive decoding against greedy and nucleus sampling, through a running
`duet serve` (bench/fusion/run.sh starts it with profiles llm, duet-cd, ...).

For every prompt and method: the continuation (max --n tokens, stopping at
the end of the story), then
  - repetition: distinct-2 and distinct-3 (unique / all word n-grams of the
    continuation) and the share of repeated 4-grams (4-grams that already
    occurred earlier in the same continuation), averaged over continuations;
  - the base llm's perplexity of the continuation given its prompt (echo +
    logprobs on the llm profile: the text's own tokenization), token-weighted
    over all continuations.

usage: gen_eval.py --url http://127.0.0.1:PORT --prompts FILE [--n 96] [--jobs 4] [--examples 3] > out.json
FILE: one prompt per line.
"""
import argparse
import concurrent.futures as cf
import json
import math
import re
import sys
import time
import urllib.request

# name -> (profile, sampling fields); seeds are per prompt so a rerun repeats
METHODS = [
    ("greedy", "llm", {"temperature": 0}),
    ("nucleus", "llm", {"temperature": 1.0, "top_p": 0.95}),
    ("cd", "duet-cd", {"temperature": 0}),
    ("cd-b0.5", "duet-cd-b0.5", {"temperature": 0}),
]


def post(url, body, tries=3):
    data = json.dumps(body).encode()
    for t in range(tries):
        try:
            req = urllib.request.Request(url + "/v1/completions", data=data, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=600) as r:
                return json.loads(r.read())
        except Exception as e:  # a 503 (queue full) or a reset: wait and retry
            if t == tries - 1:
                raise
            time.sleep(1 + t)


def words(text):
    return re.findall(r"[a-z0-9']+|[^\sa-z0-9']", text.lower())


def ngrams(w, n):
    return [tuple(w[i:i + n]) for i in range(len(w) - n + 1)]


def repetition(text):
    w = words(text)
    out = {}
    for n in (2, 3):
        g = ngrams(w, n)
        out["distinct_%d" % n] = len(set(g)) / len(g) if g else 1.0
    g4 = ngrams(w, 4)
    seen, rep = set(), 0
    for g in g4:
        rep += g in seen
        seen.add(g)
    out["repeated_4gram_share"] = rep / len(g4) if g4 else 0.0
    out["words"] = len(w)
    return out


def score(url, prompt, cont):
    """Sum of the llm's log-probabilities of the continuation's tokens given the prompt, and their number."""
    r = post(url, {"model": "llm", "prompt": prompt + cont, "max_tokens": 0, "echo": True, "logprobs": 0})
    lp = r["choices"][0]["logprobs"]
    s, n = 0.0, 0
    for off, x in zip(lp["text_offset"], lp["token_logprobs"]):
        if off >= len(prompt) and x is not None:
            s += x
            n += 1
    return s, n


def one(url, n_new, method, i, prompt):
    name, profile, samp = method
    body = {"model": profile, "prompt": prompt, "max_tokens": n_new, "seed": 1000 + i}
    body.update(samp)
    r = post(url, body)
    text = r["choices"][0]["text"]
    s, n = score(url, prompt, text)
    rep = repetition(text)
    return {"method": name, "i": i, "text": text, "tokens": r["usage"]["completion_tokens"], "logprob": s,
            "scored_tokens": n, **rep}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--examples", type=int, default=3)
    a = ap.parse_args()
    prompts = [l.rstrip("\n") for l in open(a.prompts, encoding="utf-8") if l.strip()]
    t0 = time.time()
    rows = []
    with cf.ThreadPoolExecutor(a.jobs) as ex:
        futs = [ex.submit(one, a.url, a.n, m, i, p) for m in METHODS for i, p in enumerate(prompts)]
        for f in futs:
            rows.append(f.result())
    res = {"prompts": len(prompts), "max_new_tokens": a.n, "seconds": round(time.time() - t0, 1), "methods": []}
    for name, profile, samp in METHODS:
        rs = [r for r in rows if r["method"] == name]
        lp = sum(r["logprob"] for r in rs)
        nt = sum(r["scored_tokens"] for r in rs)
        res["methods"].append({
            "method": name, "profile": profile, "sampling": samp,
            "distinct_2": sum(r["distinct_2"] for r in rs) / len(rs),
            "distinct_3": sum(r["distinct_3"] for r in rs) / len(rs),
            "repeated_4gram_share": sum(r["repeated_4gram_share"] for r in rs) / len(rs),
            "llm_perplexity": math.exp(-lp / nt) if nt else None,
            "mean_tokens": sum(r["tokens"] for r in rs) / len(rs),
            "scored_tokens": nt,
        })
    res["examples"] = [{"prompt": prompts[i],
                        **{r["method"]: r["text"] for r in rows if r["i"] == i}} for i in range(min(a.examples, len(prompts)))]
    res["per_prompt"] = rows
    json.dump(res, sys.stdout)
    print()


if __name__ == "__main__":
    sys.exit(main())
