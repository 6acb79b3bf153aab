#!/usr/bin/env python3
"""Plots a train_pair.py log: validation loss of each llm run against step
(the kept checkpoint is the lowest point) and the draft's greedy agreement with
the llm against step.  usage: plot_log.py LOG OUT.png"""
import json
import os
import re
import subprocess
import sys
import tempfile

log, png = sys.argv[1], sys.argv[2]
runs, slm = {}, []
for line in open(log):
    m = re.search(r"\] (llm\(d=[0-9.]+\)|slm) step (\d+)/\d+ train [0-9.]+ (\{.*\})", line)
    if not m:
        continue
    info = json.loads(m.group(3))
    if m.group(1) == "slm":
        slm.append((int(m.group(2)), info["greedy_agreement"]))
    else:
        runs.setdefault(m.group(1), []).append((int(m.group(2)), info["valid_loss"]))
tmp = tempfile.mkdtemp()
plots = []
for i, (name, pts) in enumerate(sorted(runs.items())):
    path = os.path.join(tmp, "llm%d.dat" % i)
    with open(path, "w") as f:
        f.writelines("%d %f\n" % p for p in pts)
    plots.append("'%s' using 1:2 with linespoints title 'llm, dropout %s'" % (path, name[6:-1]))
spath = os.path.join(tmp, "slm.dat")
with open(spath, "w") as f:
    f.writelines("%d %f\n" % p for p in slm)
script = """set terminal pngcairo size 1000,420 font ',10'
set output '%s'
set multiplot layout 1,2
set title 'llm: validation loss (nats/token, windows of 512)'
set xlabel 'step (32 x 512 tokens)'; set grid
plot %s
set title 'draft: top-1 agreement with the llm on its greedy text'
set xlabel 'step (64 x 256 tokens)'; set yrange [0.6:0.95]
plot '%s' using 1:2 with linespoints title 'slm-draft' lc 3
unset multiplot
""" % (png, ", ".join(plots), spath)
subprocess.run(["gnuplot"], input=script.encode(), check=True)
print("wrote", png)
