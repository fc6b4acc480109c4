#!/usr/bin/env bash
# Build the docs site into _docs/ from nbdev's processed notebooks (mkdocs-material + mkdocs-jupyter; see scripts/docs.py).
#   bash scripts/docs.sh            then preview: python -m http.server -d _docs 8000  → http://127.0.0.1:8000
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
[ -n "${VIRTUAL_ENV:-}" ] || . "${AXOLOTL_NB_VENV:-.venv}/bin/activate"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg NO_MKDOCS_2_WARNING=1
python scripts/docs.py "$@"
