#!/usr/bin/env python3
"""Score a model on the cloze items with `duet generate` (greedy), Python 3 stdlib only.

    python3 bench/routing/eval_cloze.py -m models/llm.gguf [--split test] [--limit 30] [--stride K] [-j 2]

Rule (bench/routing/README.md): an item is correct when the greedy continuation
starts with " " + answer followed by a non-letter character (or by the end of
the generation when the model stopped there). Generation asks for 3 tokens and,
when those end inside or right at the end of the answer, again for 16.
"""
import argparse
import concurrent.futures
import json
import os
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def generate(duet, model, prompt, n, threads):
    out = subprocess.run([duet, "generate", "-m", model, "-p", prompt, "-n", str(n), "--temp", "0",
                          "-t", str(threads), "--json"], capture_output=True, check=True)
    j = json.loads(out.stdout.decode("utf-8"))
    return j["text"], j.get("finish_reason", "")


def verdict(text, finish, answer):
    """True/False, or None when the text ends too early to tell (ask for more tokens)."""
    target = " " + answer
    if text.startswith(target):
        rest = text[len(target):]
        if rest:
            return not rest[0].isalpha()
        return True if finish == "stop" else None
    if target.startswith(text) and finish != "stop":
        return None
    return False


def score(duet, model, item, threads):
    for n in (3, 16):
        text, finish = generate(duet, model, item["prompt"], n, threads)
        v = verdict(text, finish, item["answer"])
        if v is not None:
            return v, text
    return False, text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--split", default="test", choices=("calib", "test"))
    ap.add_argument("--data", default=None, help="a jsonl file (default: bench/data/cloze-SPLIT.jsonl)")
    ap.add_argument("--limit", type=int, default=0, help="score at most N items (0: all)")
    ap.add_argument("--stride", type=int, default=1, help="take every K-th item")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="parallel duet processes")
    ap.add_argument("-t", "--threads", type=int, default=1, help="threads per duet process")
    ap.add_argument("--duet", default=os.path.join(ROOT, "build", "duet"))
    ap.add_argument("-v", "--verbose", action="store_true", help="print every item's continuation")
    args = ap.parse_args()

    path = args.data or os.path.join(ROOT, "bench", "data", "cloze-%s.jsonl" % args.split)
    with open(path, encoding="utf-8") as f:
        items = [json.loads(line) for line in f][::args.stride]
    if args.limit:
        items = items[:args.limit]
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as ex:
        results = list(ex.map(lambda it: score(args.duet, args.model, it, args.threads), items))
    ok = sum(1 for v, _ in results if v)
    if args.verbose:
        for it, (v, text) in zip(items, results):
            print("%s %-8s %-12s %r" % ("+" if v else "-", it["id"], it["answer"], text))
    print(json.dumps({"model": args.model, "data": os.path.relpath(path), "n": len(items), "correct": ok,
                      "accuracy": round(ok / len(items), 4) if items else None}))


if __name__ == "__main__":
    sys.exit(main())
