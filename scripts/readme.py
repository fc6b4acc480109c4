"""Render nbs/index.ipynb to README.md: markdown cells verbatim, code cells as fenced python, and the picture of a
`#| echo: false` cell (the pipeline diagram) as an image under docs/images/.

    python scripts/readme.py [--check]
"""
import base64, json, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
IMAGES = root/'docs'/'images'

def render() -> tuple[str, dict[Path, bytes]]:
    "README text from the index notebook, and the image files it links to."
    nb = json.loads((root/'nbs'/'index.ipynb').read_text())
    parts, images = [], {}
    for c in nb['cells']:
        src = ''.join(c['source']).strip()
        if not src: continue
        if src.startswith('#|'):
            pngs = [o['data']['image/png'] for o in c.get('outputs', []) if 'image/png' in o.get('data', {})]
            if 'echo: false' in src and pngs:
                p = IMAGES/f"index-{c['id']}.png"
                images[p] = base64.b64decode(''.join(pngs[0]))
                parts.append(f"![the pipeline]({p.relative_to(root).as_posix()})")
            continue
        parts.append(src if c['cell_type'] == 'markdown' else f"```python\n{src}\n```")
    return '\n\n'.join(parts) + '\n', images

if __name__ == '__main__':
    (txt, images), out = render(), root/'README.md'
    if '--check' in sys.argv:
        stale = [p for p, b in images.items() if not p.exists() or p.read_bytes() != b]
        if not out.exists() or out.read_text() != txt or stale:
            sys.exit("README.md (or its images) is stale: run `python scripts/readme.py`")
    else:
        out.write_text(txt)
        for p, b in images.items():
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b)
