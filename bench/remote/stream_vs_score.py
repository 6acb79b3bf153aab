#!/usr/bin/env python3
"""A remote LLM's answer two ways, against a running duet serve (or any
OpenAI-compatible server that scores with echo + logprobs and returns token ids):

  score:  one /v1/completions call per token, scoring the whole sequence so far
          (what duet's remote *sequence* does when it decodes alone: echo,
          logprobs, max_tokens 1) -- the remote LLM before streamed generation;
  stream: one streamed call for the whole answer (duet_remote_generate).

Both greedy; prints the median seconds of each over --reps interleaved runs and
whether they produced the same ids. Standard library only.

    duet serve -m models/llm.gguf --port 8080 &
    python3 bench/remote/stream_vs_score.py --url http://127.0.0.1:8080 -n 64 [--json]
"""
import argparse
import json
import statistics
import sys
import time
import urllib.request

PROMPT = [311, 260, 785, 338, 305, 1210, 290, 262]  # "once upon a time, there was" in the shipped vocabulary


def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=120)


def token_id(s):
    if not s.startswith("token_id:"):
        sys.exit("the server does not return tokens as ids (return_tokens_as_token_ids): %r" % s)
    return int(s.split(":", 1)[1])


def by_scoring(url, model, n):
    seq, calls, t0 = list(PROMPT), 0, time.time()
    for _ in range(n):
        o = json.load(post(url, {"model": model, "prompt": seq, "max_tokens": 1, "temperature": 0, "echo": True,
                                 "logprobs": 1, "return_tokens_as_token_ids": True, "ignore_eos": True}))
        calls += 1
        seq.append(token_id(o["choices"][0]["logprobs"]["tokens"][-1]))
    return time.time() - t0, calls, seq[len(PROMPT):]


def by_stream(url, model, n):
    ids, t0, ttft = [], time.time(), None
    body = {"model": model, "prompt": PROMPT, "max_tokens": n, "temperature": 0, "stream": True, "logprobs": 0,
            "return_tokens_as_token_ids": True, "ignore_eos": True}
    for line in post(url, body):
        line = line.decode().strip()
        if not line.startswith("data: {"):
            continue
        lp = json.loads(line[6:])["choices"][0].get("logprobs")
        if lp and lp.get("tokens"):
            ttft = ttft if ttft is not None else time.time() - t0
            ids += [token_id(t) for t in lp["tokens"]]
    return time.time() - t0, 1, ids, ttft


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="the server's base URL")
    ap.add_argument("--model", default="llm")
    ap.add_argument("-n", type=int, default=64, help="tokens to generate (default 64)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved runs of each (default 3)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    if a.n < 1 or a.reps < 1:
        sys.exit("-n and --reps must be >= 1")
    url = a.url.rstrip("/") + "/v1/completions"
    score_s, stream_s, ttfts, same = [], [], [], True
    for _ in range(a.reps):
        ts, calls_score, ids_score = by_scoring(url, a.model, a.n)
        tt, calls_stream, ids_stream, ttft = by_stream(url, a.model, a.n)
        score_s.append(ts), stream_s.append(tt), ttfts.append(ttft or 0)
        same &= ids_score == ids_stream
    r = {"tokens": a.n, "reps": a.reps, "score_calls": calls_score, "score_s": statistics.median(score_s),
         "stream_calls": calls_stream, "stream_s": statistics.median(stream_s),
         "stream_ttft_s": statistics.median(ttfts), "speedup": statistics.median(score_s) / statistics.median(stream_s),
         "same_ids": same}
    if a.json:
        print(json.dumps(r))
    else:
        print("%d tokens: scoring %d calls %.3f s | streaming %d call %.3f s (first token %.3f s) | %.1fx | same ids: %s"
              % (a.n, r["score_calls"], r["score_s"], r["stream_calls"], r["stream_s"], r["stream_ttft_s"],
                 r["speedup"], same))


if __name__ == "__main__":
    main()
