#!/usr/bin/env bash
# The main job, on the CPU by default: evaluate the committed tiny speech LLM on its held-out test set uncompressed,
# with Samp and with the two honest baselines at keep ratio 0.6, then draw the dashboard of the records.
# Extra arguments go to every `samp eval` call (e.g. --limit 50, --device cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

work=runs/demo
model=fixtures/speech_tiny/model
data=fixtures/speech_tiny/test/manifest.jsonl
for run in base:1.0 samp:0.6 uniform:0.6 random:0.6; do
  .venv/bin/samp eval --model "$model" --data "$data" --method "${run%%:*}" --keep-ratio "${run##*:}" \
    --work-dir "$work" --batch-size 16 "$@"
done
.venv/bin/samp dashboard "$work/records.jsonl" --out "$work/site"
echo "records: $work/records.jsonl   dashboard: $work/site/index.html"
