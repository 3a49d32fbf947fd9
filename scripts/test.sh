#!/usr/bin/env bash
# The test command: set up (idempotent), then unit, property, golden and CPU benchmark tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# The CPU benchmarks' scores (WER with CIs, token counts) are appended to a records history, as a user's runs would be.
exec .venv/bin/python -m pytest --samp-records runs/test/records.jsonl "$@"
