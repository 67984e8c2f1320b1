#!/usr/bin/env bash
# The main job. For now (the data layer): collect the Atari 100k offline dataset for Pong with
# the random policy (100,000 agent steps), verify it, summarise it, and measure the random
# anchor score under the same protocol. Outputs go to runs/main/. Re-running reuses a dataset
# that verifies. Arguments are passed to `scaleworld data collect` (e.g. --steps 20000).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/tools/venv.sh"
sw="$root/.venv/bin/scaleworld"
out="$root/runs/main/Pong-random"
if [ ! -f "$out/manifest.json" ]; then
  "$sw" data collect --game Pong --policy random --steps 100000 --seed 0 --out "$out" "$@"
fi
"$sw" data verify "$out"
"$sw" data info "$out"
"$sw" eval score --game Pong --policy random --episodes 8 --seed 0 --out "$root/runs/main/Pong-random-score.json"
