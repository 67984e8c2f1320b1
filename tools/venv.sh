#!/usr/bin/env bash
# Create and fill the project's virtual environment (.venv) on first use; a no-op afterwards
# unless pyproject.toml changed. Torch: the CPU build torch==2.13.0 by default (it installs from
# local disk in seconds on our machines). For a GPU, set SCALEWORLD_TORCH to the CUDA build you
# want (for example SCALEWORLD_TORCH=torch, which on Linux x86_64 takes PyPI's CUDA build) before
# the first run, or install torch into .venv yourself: an installed torch is never replaced.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.scaleworld-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt "$root/pyproject.toml" ]; then
  exit 0
fi
echo "setting up $venv (first use)" >&2
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  "$venv/bin/pip" install --quiet "${SCALEWORLD_TORCH:-torch==2.13.0}"
fi
"$venv/bin/pip" install --quiet -e "$root[dev]"
touch "$stamp"
