#!/usr/bin/env python3
"""bench/routing report: routing and cascade curves from the per-item dumps of
`duet eval --strategy slm|llm --dump`, the measured runs of run.sh, APGR and
CPT, a gnuplot script for the plot. Python 3 standard library only.

    report.py DIR                                   # DIR/results.md on stdout, results.json, routing.gp
    report.py --best-signal CALIB_LABELLED.jsonl    # the signal with the best AUC on the labels
    report.py --labelled DIR ITEMS.jsonl            # DIR/test-labelled.jsonl: the items labelled from
                                                    # DIR/slm.jsonl and DIR/llm.jsonl (route-fit input)
    report.py --cascade-threshold DIR SHARE [--tiers 3]
                                                    # the cascade threshold that sends SHARE of the
                                                    # calibration split to the LLM

Definitions (RouteLLM, Ong et al. 2024):
  PGR(share) = (acc(share) - acc_slm) / (acc_llm - acc_slm), the performance gap recovered;
  APGR       = the area under the (LLM share, PGR) curve over shares 0..1 (trapezoids);
  CPT(x%)    = the smallest LLM share whose PGR >= x%.
Random routing (each request to the LLM with probability p) has PGR(p) = p in
expectation: APGR 0.5, CPT(x%) = x%. The oracle sends exactly the items the SLM
gets wrong and the LLM right.
"""
import json
import math
import os
import sys

LOGISTIC = "logistic (route-fit)"
LOGISTIC_H = "logistic + hidden state (route-fit --hidden)"
IN_SAMPLE = "in-sample"  # the curve names of routers fitted on the test split itself start with it
# run.sh's router files: (file, curve name, kind); kind "insample" is no router one could
# deploy (fitted on the items it is evaluated on): reported apart, never a goal's figure
ROUTER_FILES = [
    ("router-logistic.txt", LOGISTIC, "route"),
    ("router-logistic-hidden.txt", LOGISTIC_H, "route"),
    ("router-logistic-618.txt", "logistic, fitted on the 618-item calibration split", "route"),
    ("router-logistic-hidden-618.txt", "logistic + hidden state, fitted on the 618-item calibration split", "route"),
    ("router-insample.txt", IN_SAMPLE + " logistic (fitted on the test split)", "insample"),
    ("router-insample-hidden.txt", IN_SAMPLE + " logistic + hidden state (fitted on the test split)", "insample"),
]
SIGNALS = ["mean_entropy", "max_entropy", "prompt_nll", "neg_top1", "neg_margin", "copy_miss", "top1_novel",
           "content_miss", "content_alt"]


def load_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def auc(scores, labels):
    """P(score of a positive > score of a negative), ties count half (Mann-Whitney via ranks)."""
    pairs = sorted(zip(scores, labels))
    pos = sum(labels)
    neg = len(labels) - pos
    if not pos or not neg:
        return float("nan")
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        mid_rank = (i + 1 + j) / 2.0
        rank_sum += mid_rank * sum(1 for k in range(i, j) if pairs[k][1])
        i = j
    return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg)


def read_router(path):
    r = {"kind": None, "signal": None, "threshold": None, "share": None}
    with open(path, encoding="utf-8") as f:
        for line in f:
            p = line.split()
            if not p or p[0] == "duet-router":
                continue
            if p[0] in ("kind", "signal"):
                r[p[0]] = p[1]
            elif p[0] in ("threshold", "share", "b"):
                r[p[0]] = float(p[1])
            elif p[0] in ("mean", "scale", "w", "h_mean", "h_scale", "h_w"):
                r[p[0]] = [float(x) for x in p[1:]]
            elif p[0] == "signals":
                r["signals"] = p[1:]
    return r


def router_score(r, sig, hidden=None):
    """The router's score of an item: sig, its signals by name; hidden, its pooled
    hidden state (a router fitted with --hidden needs it)."""
    if r["kind"] == "threshold":
        return sig[r["signal"]]
    if r["kind"] == "logistic":
        names = r.get("signals", SIGNALS[:5])  # a v1 file holds the first five
        z = r["b"] + sum(r["w"][k] * (sig[s] - r["mean"][k]) / r["scale"][k] for k, s in enumerate(names))
        if "h_w" in r:
            z += sum(w * (h - m) / sc for w, h, m, sc in zip(r["h_w"], hidden, r["h_mean"], r["h_scale"]))
        return 1.0 / (1.0 + math.exp(-max(-700.0, min(700.0, z))))
    raise ValueError("no score for a %s router" % r["kind"])


# ---- curves ------------------------------------------------------------------------

def routing_curve(score, slm_ok, llm_ok):
    """Points (share, accuracy) of 'to the LLM when score > t' over every threshold t:
    items sorted by score, highest first; tied scores move together."""
    n = len(score)
    order = sorted(range(n), key=lambda i: -score[i])
    correct = sum(slm_ok)
    pts = [(0.0, correct / n)]
    k = 0
    while k < n:
        j = k
        while j < n and score[order[j]] == score[order[k]]:
            correct += llm_ok[order[j]] - slm_ok[order[j]]
            j += 1
        k = j
        pts.append((k / n, correct / n))
    return pts


def cascade3_curve(conf_slm, conf_mid, ok_slm, ok_mid, ok_llm):
    """Points (share reaching the LLM, accuracy, share reaching the mid) of the 3-tier
    cascade with one threshold T for both judged tiers, over every T."""
    n = len(conf_slm)
    cands = sorted(set(conf_slm) | set(conf_mid))
    ts = [-math.inf] + [(a + b) / 2 for a, b in zip(cands, cands[1:])] + [math.inf]
    pts = []
    for t in ts:
        acc = reach_llm = reach_mid = 0
        for i in range(n):
            if conf_slm[i] >= t:
                acc += ok_slm[i]
            elif conf_mid[i] >= t:
                acc += ok_mid[i]
                reach_mid += 1
            else:
                acc += ok_llm[i]
                reach_mid += 1
                reach_llm += 1
        pts.append((reach_llm / n, acc / n, reach_mid / n))
    pts.sort()
    # one point per share: the best accuracy reached at it (the curve a threshold sweep traces)
    out = []
    for p in pts:
        if out and out[-1][0] == p[0]:
            if p[1] > out[-1][1]:
                out[-1] = p
        else:
            out.append(p)
    return out


def pgr_points(pts, acc_slm, acc_llm):
    gap = acc_llm - acc_slm
    return [(p[0], (p[1] - acc_slm) / gap) for p in pts]


def apgr(pgr):
    area = 0.0
    for (x0, y0), (x1, y1) in zip(pgr, pgr[1:]):
        area += (x1 - x0) * (y0 + y1) / 2
    return area


def cpt(pgr, frac):
    for x, y in pgr:
        if y >= frac - 1e-12:
            return x
    return float("nan")


def pgr_at(pgr, share):
    """PGR at an LLM share, linear between the curve's points."""
    for (x0, y0), (x1, y1) in zip(pgr, pgr[1:]):
        if x0 <= share <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (share - x0) / (x1 - x0)
    return pgr[-1][1]


def beats_random(pgr):
    """Share of the interior points (0 < share < 1) strictly above the diagonal, and the worst margin."""
    inner = [(x, y) for x, y in pgr if 0 < x < 1]
    if not inner:
        return float("nan"), float("nan")
    above = sum(1 for x, y in inner if y > x + 1e-12)
    return above / len(inner), min(y - x for x, y in inner)


# ---- modes ---------------------------------------------------------------------------

def best_signal(path):
    rows = load_jsonl(path)
    y = [int(r["label"]) for r in rows]
    best = max(SIGNALS, key=lambda s: auc([r["signals"][s] for r in rows], y))
    print(best)


def write_labelled(out, items_path):
    """The evaluated items with the label route-fit uses (gain: the SLM wrong and the LLM
    right) and the SLM's signals and hidden state from the single-model dumps, so that a
    router can be fitted on them without running a model."""
    items = load_jsonl(items_path)
    slm = load_jsonl(os.path.join(out, "slm.jsonl"))
    llm = load_jsonl(os.path.join(out, "llm.jsonl"))
    assert len(items) == len(slm) == len(llm), "the dumps are not of these items"
    path = os.path.join(out, "test-labelled.jsonl")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        for it, s, l in zip(items, slm, llm):
            assert s["answer"] == l["answer"] == it["answer"], "the dumps are not of these items"
            row = {"id": s["id"], "prompt": it["prompt"], "answer": it["answer"],
                   "label": int(not s["correct"] and l["correct"]), "signals": s["signals"], "hidden": s["hidden"]}
            f.write(json.dumps(row) + "\n")
    os.replace(path + ".tmp", path)


def cascade_threshold(out, share, tiers):
    slm = load_jsonl(os.path.join(out, "calib-slm.jsonl"))
    confs = [[r["mean_logprob"] for r in slm]]
    if tiers == 3:
        mid = load_jsonl(os.path.join(out, "calib-mid.jsonl"))
        confs.append([r["mean_logprob"] for r in mid])
    n = len(slm)
    # an item reaches the LLM when every judged tier is below T: max(conf) < T
    v = sorted(max(c[i] for c in confs) for i in range(n))
    want = round(share * n)
    if want <= 0:
        t = -math.inf
    elif want >= n:
        t = math.inf
    else:
        t = (v[want - 1] + v[want]) / 2
    print("%.9g" % t)


def fmt(x, d=3):
    if isinstance(x, float) and math.isnan(x):
        return "n/a"
    return ("%." + str(d) + "f") % x


def report(out):
    slm = load_jsonl(os.path.join(out, "slm.jsonl"))
    mid = load_jsonl(os.path.join(out, "mid.jsonl"))
    llm = load_jsonl(os.path.join(out, "llm.jsonl"))
    assert [r["id"] for r in slm] == [r["id"] for r in llm] == [r["id"] for r in mid], "the dumps' items differ"
    n = len(slm)
    ok_s = [int(r["correct"]) for r in slm]
    ok_m = [int(r["correct"]) for r in mid]
    ok_l = [int(r["correct"]) for r in llm]
    acc_s, acc_m, acc_l = sum(ok_s) / n, sum(ok_m) / n, sum(ok_l) / n
    gain = [int(not a and b) for a, b in zip(ok_s, ok_l)]
    runs = {name[:-5]: load_json(os.path.join(out, name)) for name in sorted(os.listdir(out))
            if name.endswith(".json") and name != "results.json"}
    sec = {k: runs[k]["slm_s"] for k in ("slm", "mid")}
    sec["llm"] = runs["llm"]["llm_s"]
    sig_s = runs["slm"]["analysis_s"]  # one SLM pass over every prompt: the routers' signals

    curves = {}  # name -> dict(points, kind, cost(share))
    for s in SIGNALS:
        curves["threshold " + s] = {"pts": routing_curve([r["signals"][s] for r in slm], ok_s, ok_l), "kind": "route"}
    fitted = {}  # the router files of run.sh step 2 that are there: curve name -> router
    for fn, name, kind in ROUTER_FILES:
        path = os.path.join(out, fn)
        if os.path.exists(path):
            fitted[name] = read_router(path)
            curves[name] = {"pts": routing_curve([router_score(fitted[name], r["signals"], r.get("hidden"))
                                                  for r in slm], ok_s, ok_l), "kind": kind}
    logistic, logistic_h = fitted.get(LOGISTIC), fitted.get(LOGISTIC_H)
    curves["cascade slm>llm, mean logprob"] = {
        "pts": routing_curve([-r["mean_logprob"] for r in slm], ok_s, ok_l), "kind": "cascade2"}
    curves["cascade slm>llm, min logprob"] = {
        "pts": routing_curve([-r["min_logprob"] for r in slm], ok_s, ok_l), "kind": "cascade2"}
    c3 = cascade3_curve([r["mean_logprob"] for r in slm], [r["mean_logprob"] for r in mid], ok_s, ok_m, ok_l)
    curves["cascade slm>mid>llm, mean logprob"] = {"pts": [(p[0], p[1]) for p in c3], "kind": "cascade3",
                                                  "mid": {p[0]: p[2] for p in c3}}
    # the same with the slm tier always escalating (per-tier thresholds --threshold inf --threshold T):
    # the mid answers, the LLM takes over where the mid is unsure
    curves["cascade mid>llm, mean logprob"] = {
        "pts": routing_curve([-r["mean_logprob"] for r in mid], ok_m, ok_l), "kind": "cascade_mid"}
    g = sum(gain)
    curves["oracle"] = {"pts": [(k / n, (sum(ok_s) + min(k, g)) / n) for k in range(n + 1)], "kind": "route"}
    curves["random"] = {"pts": [(0.0, acc_s), (1.0, acc_l)], "kind": "random"}

    def est_seconds(c, share):
        if c["kind"] in ("route", "insample"):
            return sig_s + (1 - share) * sec["slm"] + share * sec["llm"]
        if c["kind"] == "random":
            return (1 - share) * sec["slm"] + share * sec["llm"]
        if c["kind"] == "cascade2":
            return sec["slm"] + share * sec["llm"]
        if c["kind"] == "cascade_mid":
            return sec["mid"] + share * sec["llm"]
        return sec["slm"] + c["mid"].get(share, share) * sec["mid"] + share * sec["llm"]

    rows = []
    for name, c in curves.items():
        pgr = pgr_points(c["pts"], acc_s, acc_l)
        frac, margin = beats_random(pgr)
        c["pgr"] = pgr
        rows.append({"name": name, "apgr": apgr(pgr), "cpt50": cpt(pgr, 0.5), "cpt80": cpt(pgr, 0.8),
                     "cpt95": cpt(pgr, 0.95), "pgr_at_50": pgr_at(pgr, 0.5),
                     "acc_at_50": acc_s + pgr_at(pgr, 0.5) * (acc_l - acc_s),
                     "above_random": frac, "worst_margin": margin})

    # measured operating points
    meas = []
    for name, j in runs.items():
        if name in ("slm", "mid", "llm") or name.startswith(("fit-", "calib-")):
            continue
        p = j.get("params", {})
        what = {"route-logistic": "route, logistic router",
                "route-logistic-hidden": "route, logistic router + hidden state", "route-best": "route, threshold on %s" % p.get("signal"),
                "route-random": "route, random", "cascade2": "cascade slm>llm",
                "cascade3": "cascade slm>mid>llm"}.get(name, name)
        if name.startswith("defer-"):
            what = "defer, eta %s" % name[6:]
        param = ""
        if "threshold" in p:
            param = "threshold %s" % (("%.4g" % p["threshold"]) if isinstance(p["threshold"], float) else p["threshold"])
        if "coin" in p:
            param = "P(LLM) %.2f" % p["coin"]
        if "eta" in p:
            param = "eta %.2f" % p["eta"]
        model_s = j["slm_s"] + j["llm_s"] + sum(j.get("mid_s", []))
        meas.append({"name": what, "run": name, "param": param, "accuracy": j["accuracy"], "llm_share": j["llm_share"],
                     "llm_token_share": j["llm_token_share"], "pgr": (j["accuracy"] - acc_s) / (acc_l - acc_s),
                     "model_s": model_s, "run_s": j["run_s"], "answered_by": j.get("answered_by")})
    meas.sort(key=lambda m: m["run"])

    # the offline curves predict the measured runs exactly where the thresholds are known
    checks = []
    if logistic and "route-logistic" in runs:
        sc = [router_score(logistic, r["signals"]) for r in slm]
        to = [s > logistic["threshold"] for s in sc]
        acc = sum(ok_l[i] if to[i] else ok_s[i] for i in range(n)) / n
        checks.append(("route, logistic router", sum(to) / n, acc, runs["route-logistic"]))
    if logistic_h and "route-logistic-hidden" in runs:
        sc = [router_score(logistic_h, r["signals"], r["hidden"]) for r in slm]
        to = [s > logistic_h["threshold"] for s in sc]
        acc = sum(ok_l[i] if to[i] else ok_s[i] for i in range(n)) / n
        checks.append(("route, logistic router + hidden state", sum(to) / n, acc, runs["route-logistic-hidden"]))
    if "cascade2" in runs:
        t = runs["cascade2"]["params"]["threshold"]
        esc = [r["mean_logprob"] < t for r in slm]
        acc = sum(ok_l[i] if esc[i] else ok_s[i] for i in range(n)) / n
        checks.append(("cascade slm>llm", sum(esc) / n, acc, runs["cascade2"]))
    if "cascade3" in runs:
        t = runs["cascade3"]["params"]["threshold"]
        acc = reach = 0
        for i in range(n):
            if slm[i]["mean_logprob"] >= t:
                acc += ok_s[i]
            elif mid[i]["mean_logprob"] >= t:
                acc += ok_m[i]
            else:
                acc += ok_l[i]
                reach += 1
        checks.append(("cascade slm>mid>llm", reach / n, acc / n, runs["cascade3"]))

    # ---- results.md ----
    L = []
    L.append("## Routing, cascades and deferral on the cloze test split (%d items)\n" % n)
    L.append("Models alone (greedy, %d new tokens; seconds: the model's passes, one thread pool of %d threads):\n"
             % (runs["slm"]["params"]["max_new"], runs["slm"]["params"]["threads"]))
    L.append("| model | accuracy | seconds | tokens evaluated |")
    L.append("|---|---:|---:|---:|")
    for k, path in (("slm", "models/slm.gguf"), ("mid", "models/slm-draft.gguf"), ("llm", "models/llm.gguf")):
        j = runs[k]
        ev = sum(j["tokens_evaluated"].values())
        L.append("| %s (`%s`) | %.4f | %.1f | %d |" % (k, path, j["accuracy"], sec[k], ev))
    L.append("| oracle router (SLM, or the LLM when only it is right) | %.4f | | |" % ((sum(ok_s) + g) / n))
    L.append("")
    L.append("Gap SLM -> LLM: %.4f (%d items the LLM gets and the SLM does not, %d the other way). "
             "Signals pass (routers): %.1f s.\n" % (acc_l - acc_s, g, sum(int(a and not b) for a, b in zip(ok_s, ok_l)),
                                                  sig_s))
    L.append("Curves over every threshold (offline, from the two single-model dumps; the SLM's signals are its pass "
             "over the prompt, the cascade's confidence the SLM answer's token log-probability):\n")
    L.append("| router | APGR | CPT(50%) | CPT(80%) | CPT(95%) | PGR at 50% share | accuracy at 50% | "
             "above random (shares) | worst margin vs random |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["name"], fmt(r["apgr"]), fmt(r["cpt50"]), fmt(r["cpt80"]), fmt(r["cpt95"]), fmt(r["pgr_at_50"]),
            fmt(r["acc_at_50"], 4), "n/a" if r["name"] == "random" else fmt(r["above_random"] * 100, 1) + "%",
            "n/a" if r["name"] == "random" else fmt(r["worst_margin"], 4)))
    L.append("")
    L.append("Measured runs through the strategies (`duet eval`, thresholds fitted or calibrated on the "
             "calibration split only; seconds: every model's passes, and the strategy's whole run):\n")
    L.append("| strategy | setting | LLM share (requests) | LLM share (tokens) | accuracy | PGR | model s | run s |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for m in meas:
        L.append("| %s | %s | %.3f | %.3f | %.4f | %.3f | %.1f | %.1f |" % (
            m["name"], m["param"], m["llm_share"], m["llm_token_share"], m["accuracy"], m["pgr"], m["model_s"],
            m["run_s"]))
    if checks:
        L.append("")
        L.append("Offline prediction (the dumps, the same threshold) against the measured run:\n")
        L.append("| strategy | predicted share | measured share | predicted accuracy | measured accuracy |")
        L.append("|---|---:|---:|---:|---:|")
        for name, sh, acc, j in checks:
            L.append("| %s | %.4f | %.4f | %.4f | %.4f |" % (name, sh, j["llm_share"], acc, j["accuracy"]))
    # goals
    routers = [r for r in rows if r["name"] not in ("oracle", "random") and not r["name"].startswith(IN_SAMPLE)]
    two = [r for r in routers if "mid" not in r["name"]]
    best95 = min(routers, key=lambda r: (math.isnan(r["cpt95"]), r["cpt95"]))
    best_apgr = max(routers, key=lambda r: r["apgr"])
    best95_two = min(two, key=lambda r: (math.isnan(r["cpt95"]), r["cpt95"]))
    L.append("")
    L.append("Goals: recover 95%% of the gap with at most 50%% of requests to the LLM: with the two models "
             "(slm, llm) the best CPT(95%%) is %s (%s): %s; with the mid tier %s (%s): %s. "
             "Beat random at every share: %s." % (
                 fmt(best95_two["cpt95"]), best95_two["name"], "met" if best95_two["cpt95"] <= 0.5 else "missed",
                 fmt(best95["cpt95"]), best95["name"], "met" if best95["cpt95"] <= 0.5 else "missed",
                 ", ".join("%s %s" % (r["name"], "yes" if r["worst_margin"] > 0 else "no (%.1f%% of shares above)"
                                      % (100 * r["above_random"])) for r in routers)))
    L.append("Best APGR: %s (%.3f); with the two models: %s (%.3f)." % (
        best_apgr["name"], best_apgr["apgr"], max(two, key=lambda r: r["apgr"])["name"],
        max(two, key=lambda r: r["apgr"])["apgr"]))
    print("\n".join(L))

    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"n_items": n, "accuracy": {"slm": acc_s, "mid": acc_m, "llm": acc_l, "oracle": (sum(ok_s) + g) / n},
                   "seconds": sec, "signals_s": sig_s, "curves": rows, "measured": meas,
                   "checks": [{"name": c[0], "predicted_share": c[1], "predicted_accuracy": c[2],
                               "measured_share": c[3]["llm_share"], "measured_accuracy": c[3]["accuracy"]}
                              for c in checks]}, f, indent=1)

    # ---- the plot: accuracy against LLM share, and against (estimated / measured) seconds ----
    plotted = ["oracle", "random", LOGISTIC, ROUTER_FILES[-1][1], "threshold " + max(
        SIGNALS, key=lambda s: next(r["apgr"] for r in rows if r["name"] == "threshold " + s)),
        "cascade slm>llm, mean logprob", "cascade slm>mid>llm, mean logprob", "cascade mid>llm, mean logprob"]
    files = []
    for k, name in enumerate(plotted):
        if name not in curves:
            continue
        c = curves[name]
        fn = "curve%d.dat" % k
        with open(os.path.join(out, fn), "w") as f:
            for share, acc in c["pts"]:
                f.write("%.6f %.6f %.6f\n" % (share, acc, est_seconds(c, share)))
        files.append((fn, name))
    with open(os.path.join(out, "measured.dat"), "w") as f:
        for m in meas:
            if not m["run"].startswith("defer"):
                f.write("%.6f %.6f %.6f \"%s\"\n" % (m["llm_share"], m["accuracy"], m["model_s"], m["run"]))
    with open(os.path.join(out, "defer.dat"), "w") as f:
        # eta 0 is the SLM alone, eta > 1 the LLM alone (tests/test_eval_cli.c): the sweep's ends
        f.write("0 %.6f %.6f 0\n" % (acc_s, sec["slm"]))
        for m in sorted((m for m in meas if m["run"].startswith("defer")), key=lambda m: m["llm_token_share"]):
            f.write("%.6f %.6f %.6f %.6f\n" % (m["llm_token_share"], m["accuracy"], m["model_s"], m["llm_share"]))
        f.write("1 %.6f %.6f 1\n" % (acc_l, sec["slm"] + sec["llm"]))
    singles = os.path.join(out, "singles.dat")
    with open(singles, "w") as f:
        f.write("%.6f %.6f\n%.6f %.6f\n%.6f %.6f\n" % (sec["slm"], acc_s, sec["mid"], acc_m, sec["llm"], acc_l))
    gp = ['set terminal pngcairo size 1400,560 font "sans,10" noenhanced', 'set output "%s/routing.png"' % out,
          'set multiplot layout 1,2', 'set grid', 'set key bottom right', 'set yrange [%.3f:%.3f]' % (
              min(acc_s, acc_m) - 0.02, (sum(ok_s) + g) / n + 0.02),
          'set xlabel "share of requests sent to the LLM (deferral: share of tokens)"', 'set ylabel "accuracy"',
          'set title "accuracy against LLM share (cloze test, %d items)"' % n]
    colour = {"oracle": "#888888", "random": "#000000", LOGISTIC: "#1f77b4", ROUTER_FILES[-1][1]: "#aec7e8",
              "cascade slm>llm, mean logprob": "#ff7f0e", "cascade slm>mid>llm, mean logprob": "#2ca02c",
              "cascade mid>llm, mean logprob": "#17becf"}
    def lc(name):
        return 'lc rgb "%s"' % colour.get(name, "#9467bd")
    plots = []
    for k, (fn, name) in enumerate(files):
        style = "dashtype 2" if name in ("oracle", "random") or name.startswith(IN_SAMPLE) else ""
        plots.append('"%s/%s" using 1:2 with lines lw 2 %s %s title "%s"' % (out, fn, style, lc(name), name))
    plots.append('"%s/measured.dat" using 1:2 with points pt 7 ps 1.3 lc rgb "#d62728" title "measured runs"' % out)
    plots.append('"%s/defer.dat" using 1:2 with linespoints pt 9 ps 1.3 lc rgb "#8c564b" '
                 'title "deferral, x = share of tokens (eta sweep)"' % out)
    gp.append("plot " + ", \\\n     ".join(plots))
    gp += ['set xlabel "seconds (model passes; curves estimated from the single-model runs)"',
           'set title "accuracy against seconds"', 'set key bottom right', 'set autoscale x']
    plots = []
    for fn, name in files:
        if name == "oracle" or name.startswith(IN_SAMPLE):
            continue
        style = "dashtype 2" if name == "random" else ""
        plots.append('"%s/%s" using 3:2 with lines lw 2 %s %s title "%s"' % (out, fn, style, lc(name), name))
    plots.append('"%s/measured.dat" using 3:2 with points pt 7 ps 1.3 lc rgb "#d62728" title "measured runs"' % out)
    plots.append('"%s/defer.dat" using 3:2 with linespoints pt 9 ps 1.3 lc rgb "#8c564b" title "deferral (measured)"'
                 % out)
    plots.append('"%s" using 1:2 with points pt 5 ps 1.3 title "models alone (slm, mid, llm)"' % singles)
    gp.append("plot " + ", \\\n     ".join(plots))
    gp.append("unset multiplot")
    with open(os.path.join(out, "routing.gp"), "w") as f:
        f.write("\n".join(gp) + "\n")


def main():
    a = sys.argv[1:]
    if a[:1] == ["--best-signal"] and len(a) == 2:
        best_signal(a[1])
    elif a[:1] == ["--labelled"] and len(a) == 3:
        write_labelled(a[1], a[2])
    elif a[:1] == ["--cascade-threshold"] and len(a) in (3, 5):
        tiers = int(a[4]) if len(a) == 5 and a[3] == "--tiers" else 2
        cascade_threshold(a[1], float(a[2]), tiers)
    elif len(a) == 1:
        report(a[0])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
