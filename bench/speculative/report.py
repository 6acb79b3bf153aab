#!/usr/bin/env python3
"""Renders bench_speculative's JSON as a markdown table and a gnuplot script
(speedup against draft length, measured and predicted, per temperature)."""
import json
import os
import sys

res = json.load(open(sys.argv[1]))
out = sys.argv[2]
runs = res["runs"]
for r in runs:
    r["temp"] = round(r["temp"], 3)  # stored as float32 in C
print(f"target `{os.path.basename(res['target'])}`, draft `{os.path.basename(res['draft'])}`, "
      f"{res['prompts']} story prompts + {res['hostile_prompts']} hostile, {res['new_tokens']} new tokens, "
      f"{res['threads']} thread(s); cost of a draft token = {res['cost_ratio_draft_vs_target']:.3f} x a target token; "
      f"target block of k+1 tokens vs 1: " + ", ".join(f"{x:.2f}" for x in res["target_block_cost_vs_1"]))
print()
conc = res.get("concurrent", [])
if conc:
    print("N requests stepped together by one driver (one pass per model per step) vs the same requests one "
          "after another; temperature 0, aggregate tokens/s over whole requests (prompts included):")
    print()
    print("| N | speculative batched | speculative one by one | **batched / one by one** | model ceiling (k) | "
          "plain batched | plain one by one | plain batched / one by one | spec batched / plain one by one |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in conc:
        print(f"| {c['n']} | {c['spec_batched_tok_s']:.0f} | {c['spec_sequential_tok_s']:.0f} | "
              f"**{c['spec_batched_vs_sequential']:.2f}x** | "
              f"{c.get('spec_batched_ceiling_vs_sequential', float('nan')):.2f}x ({c.get('spec_batched_ceiling_k', '')}) | "
              f"{c['plain_batched_tok_s']:.0f} | "
              f"{c['plain_sequential_tok_s']:.0f} | {c['plain_batched_vs_sequential']:.2f}x | "
              f"{c['spec_batched_vs_plain_sequential']:.2f}x |")
    print()
    if "target_rows_cost_vs_1" in res:
        print("Model ceiling: the best draft length k for N requests whose N(k+1) rows share one pass at the "
              "measured cost of one sequence's block of that many rows, drafting free, against the best k one "
              "request at a time with the measured draft cost; E(k) from the acceptance by position the "
              "one-by-one runs learned. Cost of R rows in one pass vs 1 row: " +
              ", ".join(f"{w['rows']}: {w['cost']:.2f}" for w in res["target_rows_cost_vs_1"]))
        print()
if not runs:
    sys.exit(0)
print("| set | temp | config | draft length | tok/s | speedup | predicted | acceptance | mean accepted |")
print("|---|---|---|---|---|---|---|---|---|")
for r in runs:
    pred = f"{r['predicted_speedup']:.2f}x" if "predicted_speedup" in r else ""
    k = r["draft_max"] if r["config"] == "model fixed" else ("adaptive (<= 8)" if "adaptive" in r["config"] else "")
    print(f"| {r['set']} | {r['temp']:.1f} | {r['config']} | {k} | {r['tok_s']:.0f} | {r['speedup']:.2f}x | {pred} | "
          f"{r['acceptance']*100:.0f}% | {r['mean_accepted']:.2f} |")

with open(os.path.join(out, "speedup.dat"), "w") as f:
    for temp in (0.0, 0.8):
        f.write(f"# temp {temp}\n")
        for r in runs:
            if r["set"] == "stories" and r["temp"] == temp and r["config"] == "model fixed":
                f.write(f"{r['draft_max']} {r['speedup']:.4f} {r['predicted_speedup']:.4f}\n")
        f.write("\n\n")
adaptive = {r["temp"]: r["speedup"] for r in runs if r["set"] == "stories" and r["config"] == "model adaptive"}
with open(os.path.join(out, "speedup.gp"), "w") as f:
    f.write(f"""set terminal pngcairo size 800,500 noenhanced
set output '{out}/speedup.png'
set title 'Speculative decoding: speedup over the LLM alone (story prompts)'
set xlabel 'draft length k'
set ylabel 'speedup (x)'
set grid
set key bottom right box opaque
set xrange [0.5:8.5]
set yrange [0:*]
set offsets 0, 0, 0.3, 0
plot '{out}/speedup.dat' index 0 using 1:2 with linespoints lw 2 title 'measured, temp 0', \\
     '' index 0 using 1:3 with lines dt 2 title 'predicted, temp 0', \\
     '' index 1 using 1:2 with linespoints lw 2 title 'measured, temp 0.8', \\
     '' index 1 using 1:3 with lines dt 2 title 'predicted, temp 0.8', \\
     {adaptive.get(0.0, 1)} with lines lc rgb 'black' title 'adaptive, temp 0', \\
     {adaptive.get(0.8, 1)} with lines lc rgb 'gray' title 'adaptive, temp 0.8', \\
     1 with lines lc rgb 'red' dt 3 title 'LLM alone'
""")
