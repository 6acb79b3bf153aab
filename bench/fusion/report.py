#!/usr/bin/env python3
"""bench/fusion's report: reads the step outputs in DIR (ppl-*.json, gen.json,
cost.json), writes DIR/results.json (every number, with the goals checked),
DIR/fusion.gp (gnuplot: perplexity against the llm's weight) and prints
the tables as markdown.

usage: report.py DIR > DIR/table.md
"""
import json
import os
import sys

d = sys.argv[1]


def load(name):
    p = os.path.join(d, name)
    return json.load(open(p)) if os.path.exists(p) else None


def role(ppl, r):
    return next(m for m in ppl["models"] if m["role"] == r)


res = {}
fp, fd = load("ppl-family-proxy.json"), load("ppl-family-direct.json")
gp, gd = load("ppl-general-proxy.json"), load("ppl-general-direct.json")

# ---- 1. proxy-tuning on the family case ----
if fp and gp:
    fam = {"base_llm": role(fp, "llm")["perplexity"], "base_slm": role(fp, "base")["perplexity"],
           "tuned_slm": role(fp, "tuned")["perplexity"], "proxy": fp["perplexity"],
           "direct_llm": fd["perplexity"] if fd else None, "tokens": fp["tokens"], "ctx": fp["ctx"],
           "file": os.path.relpath(fp["file"], os.path.join(os.path.dirname(__file__), "..", ".."))}
    gen = {"base_llm": role(gp, "llm")["perplexity"], "base_slm": role(gp, "base")["perplexity"],
           "tuned_slm": role(gp, "tuned")["perplexity"], "proxy": gp["perplexity"],
           "direct_llm": gd["perplexity"] if gd else None, "tokens": gp["tokens"], "ctx": gp["ctx"]}
    goals = {}
    if fam["direct_llm"]:
        gap = fam["base_llm"] - fam["direct_llm"]
        fam["gap_closed"] = (fam["base_llm"] - fam["proxy"]) / gap if gap > 0 else None
        # the same on the log scale (loss): how much of the loss gap
        import math
        lg = math.log(fam["base_llm"]) - math.log(fam["direct_llm"])
        fam["loss_gap_closed"] = (math.log(fam["base_llm"]) - math.log(fam["proxy"])) / lg if lg > 0 else None
        goals["proxy_closes_70pct_of_gap"] = fam["gap_closed"] is not None and fam["gap_closed"] >= 0.70
    gen["proxy_vs_base"] = gen["proxy"] / gen["base_llm"] - 1
    goals["proxy_general_within_5pct"] = gen["proxy_vs_base"] <= 0.05
    res["proxy"] = {"family_heldout": fam, "general": gen, "goals": goals}

    print(f"## Proxy-tuning on the family case\n")
    fj = load("family.json")
    if fj:
        res["family_data"] = fj
        print("The family's names (`make_family.py`): " + ", ".join(
            f"{n} ({v['train_occurrences']} occurrences in train.txt, {v.get('tokens', '?')} tokens)"
            for n, v in fj["names"].items()) + f"; train {fj['train']['family_stories']} family stories "
            f"({fj['train']['family_bytes']:,} bytes) + {fj['train']['replay_stories']} replayed "
            f"({fj['train']['replay_bytes']:,} bytes), dev {fj['dev']['stories']} stories ({fj['dev']['bytes']:,} bytes), "
            f"held-out {fj['valid']['stories']} stories ({fj['valid']['bytes']:,} bytes).\n")
    print(f"Perplexity (windows of {fam['ctx']} tokens, every token scored once) on the family's held-out stories "
          f"(`{fam['file']}`, {fam['tokens']:,} tokens) and on the first 200 KB of valid.txt "
          f"({gen['tokens']:,} tokens):\n")
    print("| model | family held-out | general (valid.txt, first 200 KB) |")
    print("|---|---|---|")
    rows = [("base llm (`models/llm.gguf`)", "base_llm"), ("base slm (`models/slm.gguf`)", "base_slm"),
            ("tuned slm (`models/slm-family.gguf`)", "tuned_slm"),
            ("**proxy-tuned llm** (llm + slm-family - slm)", "proxy"),
            ("llm tuned directly (reference, not shipped)", "direct_llm")]
    for name, k in rows:
        f = f"{fam[k]:.3f}" if fam[k] else "n/a"
        g = f"{gen[k]:.3f}" if gen[k] else "n/a"
        print(f"| {name} | {f} | {g} |")
    print()
    if "gap_closed" in fam and fam["gap_closed"] is not None:
        print(f"- gap closed by proxy-tuning (perplexity): ({fam['base_llm']:.3f} - {fam['proxy']:.3f}) / "
              f"({fam['base_llm']:.3f} - {fam['direct_llm']:.3f}) = **{fam['gap_closed']*100:.1f}%** "
              f"(goal >= 70%: {'met' if goals['proxy_closes_70pct_of_gap'] else 'MISSED'}); "
              f"on the log scale (loss): {fam['loss_gap_closed']*100:.1f}%")
    print(f"- general perplexity of proxy-tuning vs the base llm: **{gen['proxy_vs_base']*100:+.2f}%** "
          f"(goal <= +5%: {'met' if goals['proxy_general_within_5pct'] else 'MISSED'})")
    print()

rc = load("recipes.json")
if rc:
    res.setdefault("proxy", {})["recipes"] = rc
    print("How the tuned slm's recipe was chosen (`bench/fusion/recipes.sh`): proxy-tuning with slm fine-tuned by "
          "each recipe, measured on the family dev split and on valid.txt [200 KB, 300 KB) (select), neither of "
          "them the held-out or test text above; chosen: the lowest family dev perplexity among the recipes within "
          "+4% of the llm on select (one point of margin under the +5% limit):\n")
    print("| recipe | replay | steps | lr | family dev: proxy (llm alone, tuned slm) | general select: proxy (llm alone) | "
          "change |")
    print("|---|---|---|---|---|---|---|")
    for x in rc["recipes"]:
        mark = " **(chosen)**" if x["name"] == rc["chosen"] else ""
        fd, gs = x["family_dev"], x["general_select"]
        print(f"| {x['name']}{mark} | {'1:1' if x['replay'] else 'none'} | {x['steps']} | {x['lr']:g} | "
              f"{fd['proxy']:.3f} ({fd['llm']:.3f}, {fd['tuned']:.3f}) | {gs['proxy']:.3f} ({gs['llm']:.3f}) | "
              f"{x['general_change']*100:+.2f}% |")
    print()

fx = load("family-examples.json")
if fx:
    res.setdefault("proxy", {})["examples"] = fx
    print("Greedy continuations (40 tokens) of the base llm, proxy-tuning and the directly tuned llm:\n")
    for ex in fx:
        print(f"**{ex['prompt']}**\n")
        print("| model | continuation |")
        print("|---|---|")
        for k in ("llm", "proxy", "direct"):
            if k in ex:
                t = ex[k].replace("\n", " ").replace("|", "\\|").strip()
                print(f"| {k} | {t} |")
        print()

# ---- 2. mixture and product of experts against the weight ----
sweeps = {}
for rule in ("mix", "poe"):
    s, t = load(f"ppl-select-{rule}.json"), load(f"ppl-test-{rule}.json")
    if not s or not t:
        continue
    sel = {round(x["weight"], 4): x["perplexity"] for x in s["sweep"]}
    tst = {round(x["weight"], 4): x["perplexity"] for x in t["sweep"]}
    best = min(sel, key=lambda w: sel[w])
    sweeps[rule] = {"select": sel, "test": tst, "best_weight": best, "test_at_best": tst[best],
                    "llm_alone": tst[1.0], "slm_alone": tst[0.0], "test_best_weight_in_hindsight":
                    min(tst, key=lambda w: tst[w]), "select_tokens": s["tokens"], "test_tokens": t["tokens"]}
if sweeps:
    res["mix_poe"] = sweeps
    print("## Mixture and product of experts (llm, slm) against the llm's weight\n")
    print("Perplexity on valid.txt's first 200 KB (test); the weight is chosen on [200 KB, 300 KB) (select):\n")
    ws = sorted(next(iter(sweeps.values()))["test"])
    print("| weight | " + " | ".join(f"{w:g}" for w in ws) + " |")
    print("|---|" + "---|" * len(ws))
    for rule, sw in sweeps.items():
        print(f"| {rule} (test) | " + " | ".join(f"{sw['test'][w]:.3f}" for w in ws) + " |")
        print(f"| {rule} (select) | " + " | ".join(f"{sw['select'][w]:.3f}" for w in ws) + " |")
    print()
    print("| rule | weight chosen on select | test perplexity there | llm alone (weight 1) | slm alone (weight 0) | "
          "change vs llm alone |")
    print("|---|---|---|---|---|---|")
    for rule, sw in sweeps.items():
        print(f"| {rule} | {sw['best_weight']:g} | **{sw['test_at_best']:.3f}** | {sw['llm_alone']:.3f} | "
              f"{sw['slm_alone']:.3f} | {(sw['test_at_best'] / sw['llm_alone'] - 1) * 100:+.2f}% |")
    print()
    with open(os.path.join(d, "fusion.gp"), "w") as g:
        g.write(f'set terminal pngcairo size 1100,480 font ",10"\nset output "{os.path.join(d, "fusion.png")}"\n')
        g.write('set multiplot layout 1,2 title "Mixture and product of experts of llm (15.7M) and slm (1.07M) on '
                'valid.txt: perplexity against the llm\'s weight"\n')
        g.write('set xlabel "weight of the llm (0 = slm alone, 1 = llm alone)"\nset ylabel "perplexity"\n')
        g.write('set key top right\nset grid\n')
        plots = []
        for i, (rule, sw) in enumerate(sweeps.items()):
            for part, dash in (("test", 1), ("select", 2)):
                fn = os.path.join(d, f"sweep-{rule}-{part}.dat")
                with open(fn, "w") as f:
                    for w in sorted(sw[part]):
                        f.write(f"{w} {sw[part][w]}\n")
                plots.append(f'"{fn}" using 1:2 with linespoints dt {dash} lc {i + 1} pt {7 if dash == 1 else 6} '
                             f'title "{rule} ({part}{", first 200 KB" if part == "test" else ", [200, 300) KB"})"')
            fn = os.path.join(d, f"sweep-{rule}-chosen.dat")
            with open(fn, "w") as f:
                f.write(f"{sw['best_weight']} {sw['test_at_best']}\n")
            plots.append(f'"{fn}" using 1:2 with points pt 5 ps 2 lc {i + 1} title "{rule}: weight chosen on select"')
        g.write('set title "all weights"\nplot ' + ", \\\n     ".join(plots) + "\n")
        g.write('set title "zoom: weights 0.5 to 1"\nset xrange [0.5:1]\nset yrange [*:*]\nset key bottom left\n'
                'plot ' + ", \\\n     ".join(plots) + "\nunset multiplot\n")

# ---- 3. contrastive decoding ----
gen = load("gen.json")
if gen:
    res["generation"] = {k: gen[k] for k in ("prompts", "max_new_tokens", "seconds", "methods", "examples")}
    print(f"## Contrastive decoding against greedy and nucleus sampling\n")
    print(f"{gen['prompts']} story openings of the test part, at most {gen['max_new_tokens']} new tokens (a story "
          f"may end sooner); repetition within each continuation (word n-grams), averaged; the base llm's "
          f"perplexity of the continuations given their prompts:\n")
    print("| method | distinct-2 | distinct-3 | repeated 4-grams | llm perplexity of the text | mean tokens |")
    print("|---|---|---|---|---|---|")
    desc = {"greedy": "greedy (llm)", "nucleus": "nucleus (llm, T 1, top-p 0.95)",
            "cd": "contrastive (alpha 0.1, beta 0), greedy", "cd-b0.5": "contrastive (alpha 0.1, beta 0.5), greedy"}
    for m in gen["methods"]:
        print(f"| {desc.get(m['method'], m['method'])} | {m['distinct_2']:.3f} | {m['distinct_3']:.3f} | "
              f"{m['repeated_4gram_share']*100:.1f}% | {m['llm_perplexity']:.2f} | {m['mean_tokens']:.1f} |")
    print()
    for ex in gen["examples"]:
        print(f"**{ex['prompt']}**\n")
        print("| method | continuation |")
        print("|---|---|")
        for m in gen["methods"]:
            t = ex[m["method"]].replace("\n", " ").replace("|", "\\|").strip()
            print(f"| {m['method']} | {t} |")
        print()

# ---- 4. cost ----
cost = load("cost.json")
if cost:
    res["cost"] = cost
    print("## Cost: decode tokens/s against the llm alone\n")
    print(f"`duet generate`, greedy, {cost['new_tokens']} new tokens, {cost['threads']} threads; each strategy right "
          f"after the others on the same prompt, {cost['prompts']} prompts x {cost['rounds']} rounds; medians:\n")
    print("| strategy | command | tokens/s | ratio to the llm alone |")
    print("|---|---|---|---|")
    for s in cost["strategies"]:
        print(f"| {s['strategy']} | `{s['args']}` | {s['median_tok_s']:.1f} | {s['median_ratio_vs_llm']:.3f} |")
    print()

json.dump(res, open(os.path.join(d, "results.json"), "w"), indent=1)
