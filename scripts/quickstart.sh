#!/usr/bin/env bash
# The README's main command: install into .venv (scripts/install.sh) and run the offline quickstart end to end on CPU —
# evaluate SmolLM2-135M-Instruct → LoRA-train on the shipped date-normalization set → evaluate → merge → generate.
#   bash scripts/quickstart.sh [extra --key value overrides]
set -euo pipefail
. "$(dirname "$0")/setup.sh"
exec python scripts/quickstart.py examples/quickstart.yml "$@"
