#!/usr/bin/env bash
# Run the test suite (creates .venv on first use). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/tools/venv.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest "$@"
