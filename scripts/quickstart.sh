#!/usr/bin/env bash
# The README's main command: install into .venv (scripts/install.sh) and run the offline quickstart end to end on CPU —
# evaluate SmolLM2-135M-Instruct → LoRA-train on the shipped date-normalization set → evaluate → merge → generate.
#   bash scripts/quickstart.sh [extra --key value overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# shellcheck disable=SC1091
. "${AXOLOTL_NB_VENV:-.venv}/bin/activate"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 MPLBACKEND=Agg
exec python scripts/quickstart.py examples/quickstart.yml "$@"
