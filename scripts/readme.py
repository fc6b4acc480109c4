"""Render nbs/index.ipynb to README.md (markdown cells verbatim, code cells as fenced python).

    python scripts/readme.py [--check]
"""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent

def render() -> str:
    "README text from the index notebook."
    nb = json.loads((root/'nbs'/'index.ipynb').read_text())
    parts = []
    for c in nb['cells']:
        src = ''.join(c['source']).strip()
        if not src or src.startswith('#|'): continue
        parts.append(src if c['cell_type'] == 'markdown' else f"```python\n{src}\n```")
    return '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    txt, out = render(), root/'README.md'
    if '--check' in sys.argv:
        if not out.exists() or out.read_text() != txt: sys.exit("README.md is stale: run `python scripts/readme.py`")
    else: out.write_text(txt)
