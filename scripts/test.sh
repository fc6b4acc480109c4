#!/usr/bin/env bash
# The README's test command: install, check notebooks and package are in sync, run the notebook tests and pytest.
set -euo pipefail
. "$(dirname "$0")/setup.sh"

# Content hashes of every notebook and module (names included, so a new or deleted file counts too).
tree_hash() { find nbs axolotl_nb -type f \( -name '*.ipynb' -o -name '*.py' \) -not -path '*/.ipynb_checkpoints/*' \
  -not -path '*/__pycache__/*' -not -path 'nbs/_*' | LC_ALL=C sort | xargs sha256sum; }

echo "== nbdev-clean / nbdev-export must not change anything"
before=$(tree_hash)
nbdev-clean
nbdev-export
after=$(tree_hash)
if [ "$before" != "$after" ]; then
  echo "FAIL: notebooks and axolotl_nb/ are out of sync (run nbdev-export and nbdev-clean, then commit); changed files:"
  diff <(echo "$before") <(echo "$after") | sed -n 's/^[<>] [0-9a-f]*  //p' | sort -u
  exit 1
fi
python scripts/readme.py --check
python scripts/tutorials.py --check

echo "== ruff (config in pyproject.toml)"
ruff check .  # modules, scripts, tests, bench and the notebooks themselves

echo "== nbdev-test (skipping flags: slow, cuda)"
nbdev-test --n-workers 2 --timing

if python -c 'import mkdocs_jupyter, material' 2>/dev/null; then
  echo "== docs site (scripts/docs.sh → _docs/; checked in a browser by tests/test_site.py)"
  t=$(date +%s)
  bash scripts/docs.sh
  echo "docs site built in $(( $(date +%s) - t )) s"
elif [ -n "${AXOLOTL_NB_REQUIRE_SITE:-}" ]; then
  echo "FAIL: the docs extra is not installed (AXOLOTL_NB_EXTRAS must include docs)"; exit 1
else
  echo "== docs site skipped (install the docs extra: AXOLOTL_NB_EXTRAS=dev,docs bash scripts/install.sh)"
fi

echo "== pytest"
set +e
python -m pytest -q -m "not cuda" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "FAIL: pytest collected no tests"; exit 1; fi
exit "$rc"
