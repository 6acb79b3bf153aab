#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD for SECONDS each, seeded from the fixtures.
set -euo pipefail
build=${1:-build-fuzz}; secs=${2:-60}
here=$(cd "$(dirname "$0")/.." && pwd)
data="$here/../shared/data"
for f in "$build"/fuzz/fuzz_*; do
  [ -x "$f" ] || continue
  name=$(basename "$f")
  corpus=$(mktemp -d)
  case $name in
    fuzz_gguf) cp "$data"/ref-models/*-Q4_0.gguf "$data"/ref-models/*-Q6_K.gguf "$corpus"/ ;;
    fuzz_router) cp "$here"/bench/data/router-logistic.txt "$corpus"/ ;;
    fuzz_eval_items)  # byte 0: bit 0 allows labels (route-fit); then a file of items
      { printf '0'; head -n 3 "$here"/bench/data/cloze-test.jsonl; } > "$corpus"/items
      { printf '1'; printf '{"prompt": "a b", "label": 1, "signals": {"neg_top1": -0.5}, "hidden": [0.5, -1]}\n\n{"prompt": "x", "answer": "y", "id": 7}\n'; } > "$corpus"/labelled ;;
    fuzz_tok*) head -c 4096 "$data"/vocab/ggml-vocab-qwen2.fuzz.inp > "$corpus"/seed ;;
    fuzz_server_request)  # byte 0: '1' chat, '0' completions; then the body of each corpus request
      for r in "$here"/tests/data/server_requests/*.req; do
        line=$(head -n 1 "$r"); sel=0; case $line in *chat*) sel=1 ;; esac
        { printf '%s' "$sel"; tail -n +2 "$r"; } > "$corpus/$(basename "$r" .req)"
      done
      printf '0{"model": "duet-spec", "prompt": ["once upon", [1, 2, 3]], "n": 2, "max_tokens": 8, "stop": ["a", "b"], "echo": true, "logprobs": 2, "stream": true, "stream_options": {"include_usage": true}, "seed": 3, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05}' > "$corpus"/valid-completion
      printf '1{"model": "duet-spec-k4", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}], "max_completion_tokens": 8, "logprobs": true, "top_logprobs": 3}' > "$corpus"/valid-chat ;;
  esac
  echo "== $name: ${secs}s"
  "$f" -max_total_time="$secs" -rss_limit_mb=4096 -max_len=65536 "$corpus" 2>&1 | tail -n 3
  rm -rf "$corpus"
done
