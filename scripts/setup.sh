# Sourced by the README's commands (scripts/quickstart.sh, scripts/test.sh): from the repo root, install axolotl_nb
# into ${AXOLOTL_NB_VENV:-.venv} (scripts/install.sh), activate it, and run offline without tokenizer threads or plot
# windows.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh
# shellcheck disable=SC1091
. "${AXOLOTL_NB_VENV:-.venv}/bin/activate"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1 MPLBACKEND=Agg
