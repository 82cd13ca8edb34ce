# Sourced by scripts/bench and scripts/check: make .venv with dlgpu and its dependencies, once.
# pip on Python 3.11 takes torch and torchvision from wheels on this machine's disk where they exist.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Reinstall only when pyproject.toml changed since the last successful install.
stamp=.venv/.dlgpu-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # (this machine's pip config lists local wheel folders; its "Location ... ignored" lines are noise)
  .venv/bin/python -m pip install --quiet -e ".[dev]" 2> >(grep -v "^WARNING: Location" >&2)
  .venv/bin/python -c "import dlgpu, torch, torchvision, transformers" 
  touch "$stamp"
fi
