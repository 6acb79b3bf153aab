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

say "3. The model family duet ships (trained here, in C)"
head -c 60000 "$data/tinystories/valid.txt" > /tmp/duet-demo-valid.txt
for m in slm slm-kd llm; do
  [ -f "$models/$m.gguf" ] || continue
  ppl=$("$duet" perplexity -m "$models/$m.gguf" -f /tmp/duet-demo-valid.txt --json -t "$T" 2>/dev/null |
        python3 -c 'import json,sys; j=json.load(sys.stdin); print(f"loss {j[\"loss\"]:.3f}  perplexity {j[\"perplexity\"]:.2f}")')
  params=$("$duet" info -m "$models/$m.gguf" --json | python3 -c 'import json,sys; print(f"{json.load(sys.stdin)[\"n_params\"]/1e6:.2f}M params")')
  printf '  %-7s %-14s %s   (first 60 KB of valid.txt)\n' "$m" "$params" "$ppl"
done

say "4. Speculative decoding: the SLM drafts, the LLM verifies (greedy: identical output)"
prompt="once upon a time, there was a little girl named lily. she loved to play outside"
run() { "$duet" generate -m "$models/llm.gguf" -p "$prompt" -n 128 --temp 0 --ignore-eos -t "$T" --json "$@" 2>/dev/null; }
base=$(run)
field() { python3 -c "import json,sys; j=json.loads(sys.argv[1]); print($2)" "$1"; }
echo "  llm alone:            $(field "$base" "f\"{j['stats']['decode_tok_s']:.0f} tok/s\"")"
echo "  text: $(field "$base" "j['text'][:160].replace(chr(10),' ')")..."
for d in "$models/slm-kd.gguf" ngram "$models/slm-kd.gguf+ngram"; do
  [ -f "${d%+ngram}" ] || [ "$d" = ngram ] || d=${d/slm-kd/slm}
  out=$(run --draft "$d")
  same=$( [ "$(field "$out" "j['ids']")" = "$(field "$base" "j['ids']")" ] && echo "identical output" || echo "OUTPUT DIFFERS")
  sp=$(python3 -c "import json,sys; a=json.loads(sys.argv[1])['stats']; b=json.loads(sys.argv[2])['stats']; print(f\"{a['decode_tok_s']:.0f} tok/s, {a['decode_tok_s']/b['decode_tok_s']:.2f}x, acceptance {a['acceptance_rate']*100:.0f}%\")" "$out" "$base")
  printf '  draft %-22s %s, %s\n' "$(basename "$d"):" "$sp" "$same"
done
echo
echo "Benchmarks behind the figures in docs/performance.md: bench/engine, bench/tokenizer, bench/speculative."
