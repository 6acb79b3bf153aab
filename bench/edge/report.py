#!/usr/bin/env python3
"""bench/edge report: results.json -> a markdown table (stdout), summary.json
(the figures and the goals, one object), and edge.gp (gnuplot script for
edge.png) in OUT_DIR.

usage: report.py results.json OUT_DIR [--json]
"""
import json
import os
import statistics
import sys

MODES = ["local", "remote", "auto", "spec", "cascade"]


def med(xs):
    return statistics.median(xs) if xs else 0.0


def summarize(runs):
    toks = sum(r["n"] for r in runs)
    out = {"tok_s": med([r["tok_s"] for r in runs]), "ttft_ms": 1e3 * med([r["ttft_s"] for r in runs])}
    if runs and "passes" in runs[0]:
        out["passes_per_token"] = sum(r["passes"] for r in runs) / toks if toks else 0
    return out


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    res = json.load(open(sys.argv[1]))
    out_dir = sys.argv[2]
    as_json = "--json" in sys.argv[3:]
    local = summarize(res["local"])
    rows, goals = [], {"pass_ratio": [], "fast_where_pass_ge_rtt": [], "never_slower": []}
    same_all = True
    for c in res["cells"]:
        s = {m: summarize(c["runs"][m]) for m in c["runs"]}
        s["local"] = local
        rem = s["remote"]
        # outputs at temperature 0: remote alone, remote speculative and auto, prompt by prompt
        same = all(a["ids"] == b["ids"] == d["ids"]
                   for a, b, d in zip(c["runs"]["remote"], c["runs"]["spec"], c["runs"]["auto"]))
        same_all &= same
        pol = [r.get("policy", {}) for r in c["runs"]["auto"]]
        chose = [p.get("mode", "?") for p in pol]
        pred = med([p["predicted_speedup"] for p in pol if "predicted_speedup" in p])
        row = {"rtt_ms": c["rtt_ms"], "delay_ms": c["delay_ms"], "modes": s, "identical": same,
               "auto_chose": chose, "predicted_spec_speedup": pred,
               "measured_spec_speedup": s["spec"]["tok_s"] / rem["tok_s"] if rem["tok_s"] else 0,
               "auto_speedup": s["auto"]["tok_s"] / rem["tok_s"] if rem["tok_s"] else 0,
               "spec_pass_ratio": s["spec"]["passes_per_token"] / rem["passes_per_token"],
               "auto_pass_ratio": s["auto"]["passes_per_token"] / rem["passes_per_token"]}
        rows.append(row)
        goals["pass_ratio"].append(row["spec_pass_ratio"] <= 0.45)
        if c["delay_ms"] >= c["rtt_ms"]:
            goals["fast_where_pass_ge_rtt"].append(row["auto_speedup"] >= 2)
        goals["never_slower"].append(row["auto_speedup"] >= 0.95)
    summary = {"config": res["config"], "complete": res.get("complete", True), "elapsed_s": res.get("elapsed_s"),
               "local": local, "cells": rows, "outputs_identical": same_all,
               "goals": {"spec_passes_per_token_le_0.45_of_remote": all(goals["pass_ratio"]),
                         "auto_ge_2x_remote_where_pass_ge_rtt": all(goals["fast_where_pass_ge_rtt"]),
                         "auto_never_more_than_5pct_slower": all(goals["never_slower"]),
                         "cells_meeting": {k: f"{sum(v)}/{len(v)}" for k, v in goals.items()}}}
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)

    # the plot: tokens/s per cell and way; predicted beside measured speedup
    with open(os.path.join(out_dir, "edge.dat"), "w") as f:
        f.write("# cell remote auto spec cascade local predicted measured_spec auto_speedup\n")
        for r in rows:
            m = r["modes"]
            f.write(f"\"{r['rtt_ms']:g}/{r['delay_ms']:g}\" {m['remote']['tok_s']:.2f} {m['auto']['tok_s']:.2f} "
                    f"{m['spec']['tok_s']:.2f} {m['cascade']['tok_s']:.2f} {local['tok_s']:.2f} "
                    f"{r['predicted_spec_speedup']:.3f} {r['measured_spec_speedup']:.3f} {r['auto_speedup']:.3f}\n")
    png = os.path.join(out_dir, "edge.png")
    with open(os.path.join(out_dir, "edge.gp"), "w") as f:
        f.write(f"""set terminal pngcairo size 1100,460 font ",10"
set output "{png}"
set multiplot layout 1,2 title "duet bench/edge: {res['config']['llm']} served (pass made >= delay), {res['config']['slm']} on the device, {res['config']['n']} tokens, medians of {len(res['config']['prompts'])} prompts x {res['config'].get('repeats', 1)} runs"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xlabel "round trip / LLM pass (ms)"
set ylabel "tokens/s"
set logscale y
set key top left
set xtics rotate by -30
plot "{os.path.join(out_dir, 'edge.dat')}" using 2:xtic(1) title "remote LLM alone (stream)", '' using 3 title "auto policy", '' using 4 title "remote speculative (always)"
unset logscale y
set ylabel "speedup over the remote stream"
set key top left
set style data linespoints
plot "{os.path.join(out_dir, 'edge.dat')}" using 0:7:xtic(1) title "predicted (spec)" lw 2 pt 7, '' using 0:8 title "measured (spec)" lw 2 pt 5, '' using 0:9 title "measured (auto)" lw 2 pt 9, 1 title "" lt 0, 2 title "" lt 0
unset multiplot
""")

    if as_json:
        print(json.dumps(summary))
        return
    cfg = res["config"]
    print(f"bench/edge: {cfg['llm']} served on loopback through the delaying proxy, {cfg['slm']} on the device, "
          f"{cfg['n']} tokens x {len(cfg['prompts'])} prompts x {cfg.get('repeats', 1)} runs, greedy; medians "
          f"(passes: total / total tokens)\n")
    print(f"local SLM alone: {local['tok_s']:.0f} tok/s, first token {local['ttft_ms']:.1f} ms\n")
    print("| RTT ms | pass ms | remote tok/s | auto tok/s | spec tok/s | cascade tok/s | TTFT ms remote/auto/spec/cascade "
          "| passes/token remote/auto/spec/cascade | auto chose | predicted spec x | measured spec x | auto x | identical |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["modes"]
        print(f"| {r['rtt_ms']:g} | {r['delay_ms']:g} | {m['remote']['tok_s']:.1f} | {m['auto']['tok_s']:.1f} | "
              f"{m['spec']['tok_s']:.1f} | {m['cascade']['tok_s']:.1f} | "
              f"{m['remote']['ttft_ms']:.0f}/{m['auto']['ttft_ms']:.0f}/{m['spec']['ttft_ms']:.0f}/{m['cascade']['ttft_ms']:.0f} | "
              f"{m['remote']['passes_per_token']:.2f}/{m['auto']['passes_per_token']:.2f}/"
              f"{m['spec']['passes_per_token']:.2f}/{m['cascade']['passes_per_token']:.2f} | "
              f"{','.join(r['auto_chose'])} | {r['predicted_spec_speedup']:.2f} | {r['measured_spec_speedup']:.2f} | "
              f"{r['auto_speedup']:.2f} | {'yes' if r['identical'] else 'NO'} |")
    g = summary["goals"]
    print(f"\noutputs identical (remote alone == remote speculative == auto, every prompt and cell): "
          f"{'yes' if same_all else 'NO'}")
    print(f"goal: spec's remote passes per token <= 0.45 x remote-only's: {'met' if g['spec_passes_per_token_le_0.45_of_remote'] else 'MISSED'} "
          f"({g['cells_meeting']['pass_ratio']} cells)")
    print(f"goal: auto >= 2x remote-only tokens/s where pass >= RTT: {'met' if g['auto_ge_2x_remote_where_pass_ge_rtt'] else 'MISSED'} "
          f"({g['cells_meeting']['fast_where_pass_ge_rtt']} cells)")
    print(f"goal: auto never > 5% slower than remote-only: {'met' if g['auto_never_more_than_5pct_slower'] else 'MISSED'} "
          f"({g['cells_meeting']['never_slower']} cells)")
    if not summary["complete"]:
        print("\n(the run stopped at its time budget: some cells are missing)")


if __name__ == "__main__":
    main()
