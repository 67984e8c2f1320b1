#!/usr/bin/env bash
# The main job: the smoke study (studies/smoke.yaml) through the same pipeline as
# studies/joint26.yaml, on the local executor: collect -> tokenizer -> tokens -> dynamics (single,
# joint, matched) -> fidelity -> analysis. Results go to runs/smoke/; re-running skips finished jobs
# and resumes unfinished ones. Extra arguments are spec overrides, e.g. seeds=[0] or run_root=/tmp/x.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/tools/venv.sh"
cd "$root"
exec "$root/.venv/bin/scaleworld" run studies/smoke.yaml "$@"
