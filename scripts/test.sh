#!/usr/bin/env bash
# The README's test command: install, check notebooks and package are in sync, run the notebook tests and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. "${AXOLOTL_NB_VENV:-.venv}/bin/activate"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1 MPLBACKEND=Agg

if git rev-parse --git-dir >/dev/null 2>&1; then
  echo "== nbdev-clean / nbdev-export must not change anything"
  before=$(git status --porcelain -- nbs axolotl_nb)
  nbdev-clean
  nbdev-export
  after=$(git status --porcelain -- nbs axolotl_nb)
  if [ "$before" != "$after" ]; then
    echo "FAIL: notebooks and axolotl_nb/ are out of sync (run nbdev-export and nbdev-clean, then commit):"
    git status --porcelain -- nbs axolotl_nb
    git --no-pager diff --stat -- nbs axolotl_nb
    exit 1
  fi
fi

echo "== nbdev-test (skipping flags: slow, cuda)"
nbdev-test --n-workers 2 --timing

echo "== pytest"
set +e
python -m pytest -q -m "not cuda" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "FAIL: pytest collected no tests"; exit 1; fi
exit "$rc"
