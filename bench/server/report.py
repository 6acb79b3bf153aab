#!/usr/bin/env python3
"""Renders bench/server's results.json as a markdown table (stdout) and a gnuplot
script DIR/server.gp (aggregate tok/s against clients, one line per server/profile)."""
import json
import os
import sys

res = json.load(open(sys.argv[1]))
out = sys.argv[2]


def ms(x):
    return "" if x is None else f"{x * 1000:.0f}"


def ms1(x):
    return "" if x is None else f"{x * 1000:.1f}"


def cell(s):
    return s.replace("|", "\\|").replace("\n", " ")


def ratio(x):
    return "" if x is None else f"{x:.2f}x"


def kib(x):
    return "" if x is None else f"{x / 1024:.1f}"


h = res["host"]
print(f"`{res['model']}` (duet-spec drafts with `{res['draft']}`), {res['threads']} thread(s) and {res['slots']} slots "
      f"x {res['ctx_per_slot']} context for every server, {res['duration_s']:g} s per run, streaming /v1/completions, "
      f"max_tokens {res['max_tokens']}, temperature 0, ignore_eos; {res['prompts']} story prompts; "
      f"{h['cpus']} CPU(s) ({h['cpu_model']}), load average {h['loadavg_start'][0]:.2f} at the start, "
      f"{h['loadavg_end'][0]:.2f} at the end.")
print()
print("| server / profile | clients | requests ok | failed | tok/s | vs 1 client | vs llama-server | "
      "TTFT p50 / p99 ms | per-token p50 / p99 ms | RSS before / after MiB | notes |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in res["runs"]:
    if "skipped" in r:
        print(f"| {r['label']} | {r['clients']} | | | | | | | | | not run: {cell(r['skipped'][:300])} |")
        continue
    notes = []
    if r.get("acceptance") is not None:
        notes.append(f"acceptance {r['acceptance'] * 100:.0f}%")
    if r.get("outputs_same_as_duet_llm") is not None:
        notes.append(f"same text as duet llm: {r['outputs_same_as_duet_llm'] * 100:.0f}% of {r['outputs_compared']}")
    if r.get("short_requests"):
        notes.append(f"{r['short_requests']} request(s) under max_tokens")
    if r.get("token_count") and r["token_count"] != "usage":
        notes.append(f"tokens counted by {r['token_count']}")
    for e in r.get("errors", []):
        notes.append(f"{e['count']}x {e['error'][:100]}")
    if not r.get("warmup_ok", True):
        notes.append(f"warm-up failed: {r.get('warmup_error', '')[:100]}")
    st = r.get("server_stop") or {}
    for k in ("died_during_run", "sigterm_hang"):
        if k in st:
            notes.append(f"{k.replace('_', ' ')}: {st[k]}")
    print(f"| {r['label']} | {r['clients']} | {r['completed']} | {r['failed']} | {r['tok_s']:.1f} | "
          f"{ratio(r.get('vs_1_client'))} | {ratio(r.get('vs_llama_server'))} | "
          f"{ms(r['ttft_p50_s'])} / {ms(r['ttft_p99_s'])} | {ms1(r['tpot_p50_s'])} / {ms1(r['tpot_p99_s'])} | "
          f"{kib(r.get('rss_before_kib'))} / {kib(r.get('rss_after_kib'))} | {cell('; '.join(notes))} |")
print()


def yn(v):
    return "not measured" if v is None else ("**yes**" if v else "**no**")


if res.get("goals"):
    print("Goals:")
    print()
    for g in res["goals"]:
        parts = []
        if "x4_vs_x1" in g:
            parts.append(f"4 clients >= 2.5x one: {yn(g['x4_vs_x1_ge_2.5'])} ({g['x4_vs_x1']:.2f}x)")
        else:
            parts.append("4 clients >= 2.5x one: not measured")
        for c in (4, 16):
            parts.append(f"above llama-server at {c}: {yn(g.get(f'above_llama_at_{c}'))}")
        if "ttft_p99_at_16_s" in g:
            parts.append(f"p99 TTFT at 16 < 1 s: {yn(g['ttft_p99_at_16_lt_1s'])} ({g['ttft_p99_at_16_s'] * 1000:.0f} ms)")
        else:
            parts.append("p99 TTFT at 16 < 1 s: not measured")
        print(f"- {g['label']}: " + "; ".join(parts))
    print()

# the plot
labels = []
with open(os.path.join(out, "server.dat"), "w") as f:
    for label in dict.fromkeys(r["label"] for r in res["runs"]):
        pts = [(r["clients"], r["tok_s"]) for r in res["runs"] if r["label"] == label and "tok_s" in r]
        if not pts:
            continue
        labels.append(label)
        f.write(f"# {label}\n")
        for c, t in sorted(pts):
            f.write(f"{c} {t:.3f}\n")
        f.write("\n\n")
plots = ", ".join(f"'{out}/server.dat' index {i} using 1:2 with linespoints lw 2 pt 7 title '{l}'"
                  for i, l in enumerate(labels))
with open(os.path.join(out, "server.gp"), "w") as f:
    f.write(f"""set terminal pngcairo size 800,500 noenhanced
set output '{out}/server.png'
set title 'Streaming /v1/completions: aggregate tokens/s ({res['threads']} threads, {res['slots']} slots, {res['duration_s']:g} s per run)'
set xlabel 'concurrent clients'
set ylabel 'generated tokens/s (all clients)'
set grid
set logscale x 2
set xtics ({', '.join(str(c) for c in res['clients'])})
set xrange [{min(res['clients']) * 0.8}:{max(res['clients']) * 1.25}]
set yrange [0:*]
set key top left box opaque
""")
    f.write(f"plot {plots}\n" if plots else "set label 'no runs' at graph 0.5, 0.5 center\nplot NaN notitle\n")
