#!/usr/bin/env bash
# make demo: what duet can do today, on the models the repository ships and
# the llama.cpp reference fixtures, in well under two minutes.
set -euo pipefail
duet=${1:-build/duet}
here=$(cd "$(dirname "$0")/.." && pwd)
data=$here/../shared/data
models=$here/models
T=$(nproc)
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
now() { date +%s.%N; }

say "1. The engine computes what llama.cpp computes"
for f in llama-a-Q4_K_M qwen2-b-Q4_K_M llama-a-F16; do
  arch=${f%-*}
  prompt=$(cat "$data/ref-models/${arch}.prompt.txt")
  got=$("$duet" generate -m "$data/ref-models/$f.gguf" --tokens "$prompt" -n 32 --temp 0 --ignore-eos --json 2>/dev/null |
        python3 -c 'import json,sys; print(" ".join(map(str, json.load(sys.stdin)["ids"])))')
  want=$(tr -s ' \n' ' ' < "$data/ref-models/$f.greedy.txt" | sed 's/^ //;s/ $//')
  i=0
  read -ra g <<< "$got"; read -ra w <<< "$want"
  while [ $i -lt ${#w[@]} ] && [ "${g[$i]:-}" = "${w[$i]}" ]; do i=$((i+1)); done
  if [ $i -eq ${#w[@]} ]; then
    echo "  $f: greedy continuation matches llama.cpp for all $i tokens"
  else
    read -ra mg < "$data/ref-models/$f.greedy-margins.txt"
    echo "  $f: matches llama.cpp for $i/${#w[@]} tokens, then a near-tie (top-2 logit gap ${mg[$i]}, inside llama.cpp's own batch noise)"
  fi
done

say "2. Tokenizers that match Hugging Face"
text="Once upon a time, a little robot said: \"¡Hola! 你好 👋\""
for v in llama-spm llama-bpe qwen2; do
  ids=$(printf '%s' "$text" | "$duet" tokenize -m "$data/vocab/ggml-vocab-$v.gguf" --no-bos)
  back=$(printf '%s' "$ids" | "$duet" detokenize -m "$data/vocab/ggml-vocab-$v.gguf")
  n=$(wc -w <<< "$ids")
  [ "$back" = "$text" ] && rt="round trip exact" || rt="round trip differs"
  echo "  $v: $n tokens, $rt"
done

if [ ! -f "$models/llm.gguf" ] || [ ! -f "$models/slm.gguf" ]; then
  echo; echo "(models/llm.gguf and models/slm.gguf are not in this checkout: the collaboration part is skipped)"
  exit 0
fi

say "3. The model family duet ships (slm, slm-kd: duet train/distill in C; llm, slm-draft: scripts/gpu)"
head -c 60000 "$data/tinystories/valid.txt" > /tmp/duet-demo-valid.txt
for m in slm slm-kd slm-draft llm; do
  [ -f "$models/$m.gguf" ] || continue
  ppl=$("$duet" perplexity -m "$models/$m.gguf" -f /tmp/duet-demo-valid.txt --json -t "$T" 2>/dev/null |
        jq -r '"loss \(.loss*1000|round/1000)  perplexity \(.perplexity*100|round/100)"')
  params=$("$duet" info -m "$models/$m.gguf" --json | jq -r '"\(.n_params/10000|round/100)M params"')
  printf '  %-9s %-14s %s   (first 60 KB of valid.txt)\n' "$m" "$params" "$ppl"
done

say "4. Speculative decoding: the SLM drafts, the LLM verifies (greedy: identical output)"
prompt="once upon a time, there was a little girl named lily. she loved to play outside"
run() { "$duet" generate -m "$models/llm.gguf" -p "$prompt" -n 128 --temp 0 --ignore-eos -t 1 --json "$@" 2>/dev/null; }
base=$(run)
base_tps=$(jq -r '.stats.decode_tok_s' <<< "$base")
printf '  llm alone:                    %.0f tok/s\n' "$base_tps"
echo "  text: $(jq -r '.text[:150] | gsub("\n"; " ")' <<< "$base")..."
draft=$models/slm-draft.gguf; [ -f "$draft" ] || draft=$models/slm-kd.gguf
for d in "$draft --spec fixed --draft-max 3" "$draft" ngram "$draft+ngram"; do
  out=$(run --draft $d)
  same="OUTPUT DIFFERS"; [ "$(jq -c .ids <<< "$out")" = "$(jq -c .ids <<< "$base")" ] && same="identical output"
  line=$(jq -r --argjson b "$base_tps" '"\(.stats.decode_tok_s|round) tok/s, \(.stats.decode_tok_s/$b*100|round/100)x, acceptance \(.stats.acceptance_rate*100|round)%"' <<< "$out")
  label=$(sed "s|$models/||" <<< "$d")
  printf '  draft %-24s %s, %s\n' "$label:" "$line" "$same"
done
echo "  (on an AVX-512 core a draft token costs ~1/13 of a target token and a block of 4 target tokens ~1.2 of one:"
echo "   bench/speculative/run.sh measured 2.0x at temperature 0 over 50 prompts there; AVX2 cores gain less: docs/performance.md)"

say "5. duet serve: the same collaboration behind an OpenAI-compatible API"
log=$(mktemp)
"$duet" serve -m "$models/llm.gguf" --draft "$draft" --port 0 -t "$T" 2> "$log" &
srv=$!
trap 'kill $srv 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
url=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1)
echo "  $(grep -m1 'slots x context' "$log" | sed 's/^duet serve: //')"
echo "  streamed: curl -N $url/v1/completions -d '{\"model\": \"duet-spec\", \"stream\": true, ...}'"
curl -sN "$url/v1/completions" -H 'Content-Type: application/json' \
  -d "{\"model\": \"duet-spec\", \"prompt\": \"$prompt\", \"max_tokens\": 48, \"temperature\": 0, \"stream\": true, \"stream_options\": {\"include_usage\": true}}" |
  sed -n 's/^data: //p' | grep -v '^\[DONE\]' > "$log.sse"
printf '  text: '
jq -j 'select((.choices | length) > 0) | .duet.tokens[]? | if .by == "draft" then "\u001b[32m\(.text)\u001b[0m" else .text end' < "$log.sse"; echo
echo "        (green: drafted by the SLM and accepted by the LLM; the rest written by the LLM)"
jq -r 'select(.usage) | .duet | "  accounting: llm evaluated \(.tokens.llm.evaluated) tokens in \(.tokens.llm.passes) passes, slm \(.tokens.slm.evaluated) in \(.tokens.slm.passes); \(.tokens_by_origin.draft) of \(.tokens_by_origin.draft + .tokens_by_origin.llm) tokens drafted and accepted (acceptance \(.acceptance_rate*100|round)%), first token after \(.timings.time_to_first_token_s*1000|round) ms"' < "$log.sse"
rm -f "$log.sse"
kill $srv; wait $srv 2>/dev/null || true
echo "  playground: duet serve -m models/llm.gguf --draft models/slm-draft.gguf, then open http://127.0.0.1:8080/"

if [ -f "$models/slm-family.gguf" ]; then
  say "6. Fusion: proxy-tuning gives the LLM what a fine-tune taught the SLM (llm + slm-family - slm)"
  head -c 20000 "$here/bench/data/family/valid.txt" > /tmp/duet-demo-family.txt
  pp() { "$duet" perplexity -m "$models/llm.gguf" -f /tmp/duet-demo-family.txt -t "$T" --json "$@" 2>/dev/null | jq -r '.perplexity*100|round/100'; }
  echo "  the family's held-out stories (ysolde, tobiah, their dog pipkin, wrenfield; first 20 KB), perplexity:"
  echo "    llm alone $(pp --ctx 256), proxy-tuned $(pp --slm "$models/slm.gguf" --slm-tuned "$models/slm-family.gguf" --strategy proxy)"
  prompt="one day, a little boy went to the park"
  gen() { "$duet" generate -m "$models/llm.gguf" -p "$prompt" -n 32 --temp 0 -t 1 --json "$@" 2>/dev/null | jq -r '.text | gsub("\n"; " ")'; }
  echo "  contrastive decoding (log p_llm - log p_slm over the llm's plausible tokens) vs greedy:"
  echo "    greedy: $prompt$(gen)"
  echo "    cd:     $prompt$(gen --slm "$models/slm.gguf" --strategy cd)"
  echo "  (bench/fusion/run.sh: the family case, mixtures, contrastive decoding, the cost of each rule; docs/fusion.md)"
fi

say "7. Routing, cascades, deferral: the SLM answers what it can, the LLM the rest (80 cloze items)"
items=$here/bench/data/cloze-test.jsonl
ev() { "$duet" eval -m "$models/llm.gguf" --slm "$models/slm.gguf" -f "$items" --limit 80 --json -t "$T" "$@" 2>/dev/null; }
llm_json=$(ev --strategy llm)
llm_s=$(jq -r '.llm_s' <<< "$llm_json")
line() { jq -r --argjson ls "$llm_s" '"accuracy \(.accuracy*100|round)%, LLM on \(.llm_share*100|round)% of requests / \(.llm_token_share*100|round)% of tokens, LLM seconds \(.llm_s/$ls*100|round)% of the LLM alone"'; }
printf '  %-34s %s\n' "slm alone:" "$(ev --strategy slm | line)"
printf '  %-34s %s\n' "llm alone:" "$(line <<< "$llm_json")"
printf '  %-34s %s\n' "route, logistic router:" "$(ev --strategy route --router "$here/bench/data/router-logistic.txt" | line)"
printf '  %-34s %s\n' "route, random (P(LLM) = 0.5):" "$(ev --strategy route --signal random --llm-share 0.5 | line)"
printf '  %-34s %s\n' "cascade slm > slm-draft > llm:" "$(ev --strategy cascade --mid "$models/slm-draft.gguf" --llm-share 0.3 | line)"
printf '  %-34s %s\n' "token deferral, eta 0.4:" "$(ev --strategy defer --eta 0.4 | line)"
echo "  (the whole test split, every router against random and the oracle: bench/routing/run.sh, docs/routing.md)"
say "8. Edge and cloud: the LLM on a server (20 ms a forward pass: a big model, a busy server), the SLM on the device"
rlog=$(mktemp) egress=$(mktemp)
"$duet" serve -m "$models/llm.gguf" --port 0 -t 1 --forward-delay-ms 20 2> "$rlog" &
rsrv=$!
trap 'kill $rsrv 2>/dev/null || true' EXIT # a failed step must not leave the server holding the terminal
for _ in $(seq 100); do grep -q "listening on" "$rlog" && break; sleep 0.1; done
rurl=$(grep -o 'http://127.0.0.1:[0-9]*' "$rlog" | head -1)
rp="once upon a time, there was a little girl named lily. she loved to play outside"
passes() { curl -s "$rurl/metrics" | awk '/^duet_forward_passes_total/ {print $2}'; }
remote() { "$duet" generate -m "$draft" --remote "$rurl" --temp 0 -n 48 -t 1 --json -p "$rp" "$@" 2>/dev/null; }
p0=$(passes); solo=$(remote); p1=$(passes); auto=$(remote --draft "$draft" --policy auto); p2=$(passes)
jq -r --argjson p $((p1 - p0)) '"  remote llm streaming alone:        \(.stats.n_generated / .stats.total_s | round) tok/s, \($p) remote forward passes"' <<< "$solo"
jq -r --argjson p $((p2 - p1)) '"  device drafts, remote verifies:    \(.stats.n_generated / .stats.total_s | round) tok/s, \($p) remote forward passes (policy \(.stats.policy.mode): predicted \(.stats.policy.predicted_speedup*10|round/10)x)"' <<< "$auto"
same=$( [ "$(jq -c .ids <<< "$solo")" = "$(jq -c .ids <<< "$auto")" ] && echo "identical" || echo "DIFFERENT")
jq -rn --argjson a "$auto" --argjson s "$solo" --arg same "$same" \
  '"  measured: \(($a.stats.n_generated / $a.stats.total_s) / ($s.stats.n_generated / $s.stats.total_s) * 10 | round / 10)x the remote alone, output \($same) (bench/edge: the whole grid of round trips and pass times)"'
pp="please write to jane.doe@example.com or call +44 20 7946 0958 about card 4111 1111 1111 1111. once upon a time"
priv=$("$duet" generate -m "$draft" --remote "$rurl" --temp 0 -n 8 -t 1 --json --pipeline redact --egress-log "$egress" -p "$pp" 2>/dev/null)
leaks=$(grep -c -e 'jane.doe@example.com' -e '7946 0958' -e '4111 1111 1111 1111' "$egress" || true)
jq -r --argjson l "$leaks" '"  privacy pipeline: \(.stats.pipeline.redacted) values redacted on the device; found in what was sent: \($l)"' <<< "$priv"
kill $rsrv; wait $rsrv 2>/dev/null || true; trap - EXIT; rm -f "$rlog" "$egress"
jq -r '"  server gone: \(.stats.n_generated) tokens, degraded: \(.stats.degraded) (the device model answered; no error, nothing lost)"' <<< "$(remote --remote-timeout 2)"
echo
echo "Benchmarks behind the figures in docs/performance.md: bench/engine, bench/tokenizer, bench/speculative, bench/server;"
echo "routing and cascades: bench/routing (docs/routing.md); fusion: bench/fusion (docs/fusion.md); a remote LLM: docs/edge-cloud.md."
