#!/usr/bin/env python3
"""Renders bench_compress's JSON (bench/edge/compress/run.sh) as a markdown
table and a gnuplot script: keep ratio against the LLM's perplexity of the
reference continuation, one curve per way of shortening the prompt.

usage: report.py results.json OUT_DIR PNG_PATH   (writes OUT_DIR/compress.dat and OUT_DIR/compress.gp)"""
import json
import os
import sys

res = json.load(open(sys.argv[1]))
out, png = sys.argv[2], sys.argv[3]
rows = res["rows"]
n = res["pairs"]
seg = res.get("segment", 0)
full = next((r["surprisal_ppl"] for r in rows if r["keep_ratio"] >= 0.999), None)

print(f"SLM `{os.path.basename(res['slm'])}` compresses, LLM `{os.path.basename(res['llm'])}` scores; "
      f"{n} pairs (the first {res['prompt_tokens']} tokens of a story, its next {res['continuation_tokens']}) "
      f"from {os.path.basename(res['text'])} (pair offset {res.get('pair_offset', 0)} of its {res['long_stories']} "
      f"stories that long); first {res['keep_head']} and last {res['keep_tail']} prompt tokens "
      f"always kept by compression and random; random: median of {res['seeds']} seeds; {res['seconds']:.0f} s "
      f"({res['threads']} thread(s)).")
print()
head = ("| keep ratio | prompt tokens kept | LLM perplexity of the continuation: surprisal (duet compress) "
        "| random (median; min-max) | truncate front | surprisal vs full prompt | pairs where surprisal beats random "
        "| pairs where surprisal beats truncation |")
if seg:
    head += f" segmented ({seg}-token segments) | pairs where segmented beats one-pass |"
print(head)
print("|---" * (10 if seg else 8) + "|")
for r in rows:
    rel = f"{(r['surprisal_ppl'] / full - 1) * 100:+.1f}%" if full else ""
    line = (f"| {r['keep_ratio']:.1f} | {r['kept_tokens']:.0f} | {r['surprisal_ppl']:.3f} | {r['random_ppl']:.3f} "
            f"({r['random_ppl_min']:.3f}-{r['random_ppl_max']:.3f}) | {r['truncate_ppl']:.3f} | {rel} | "
            f"{r['pairs_surprisal_below_random']} of {n} | {r['pairs_surprisal_below_truncate']} of {n} |")
    if seg:
        line += f" {r['segmented_ppl']:.3f} | {r['pairs_segmented_below_surprisal']} of {n} |"
    print(line)

with open(os.path.join(out, "compress.dat"), "w") as f:
    f.write("# keep_ratio surprisal random random_min random_max truncate segmented\n")
    for r in rows:
        f.write(f"{r['keep_ratio']} {r['surprisal_ppl']:.5f} {r['random_ppl']:.5f} {r['random_ppl_min']:.5f} "
                f"{r['random_ppl_max']:.5f} {r['truncate_ppl']:.5f} {r.get('segmented_ppl', 0):.5f}\n")
curves = [
    "'{0}/compress.dat' using 1:2 with linespoints lw 2 pt 7 title 'surprisal (duet compress, SLM)'".format(out),
    f"'' using 1:3:4:5 with yerrorlines lw 2 pt 5 title 'random drop (median, min-max of {res['seeds']} seeds)'",
    "'' using 1:6 with linespoints lw 2 pt 9 title 'truncate the front'",
]
if seg:
    curves.append(f"'' using 1:7 with linespoints lw 2 pt 13 dt 2 title 'surprisal, segmented ({seg}-token segments)'")
with open(os.path.join(out, "compress.gp"), "w") as f:
    f.write(f"""set terminal pngcairo size 860,500 noenhanced
set output '{png}'
set title "LLM perplexity of the continuation after a shortened prompt ({n} pairs, last {res['keep_tail']} kept)"
set xlabel "share of the prompt's tokens kept"
set ylabel 'LLM perplexity of the continuation'
set grid
set key top left box opaque
set xrange [1.02:0.28]
set xtics 0.1
plot """ + ", \\\n     ".join(curves) + "\n")
