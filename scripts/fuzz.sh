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
    fuzz_tok*) head -c 4096 "$data"/vocab/ggml-vocab-qwen2.fuzz.inp > "$corpus"/seed ;;
  esac
  echo "== $name: ${secs}s"
  "$f" -max_total_time="$secs" -rss_limit_mb=4096 -max_len=65536 "$corpus" 2>&1 | tail -n 3
  rm -rf "$corpus"
done
