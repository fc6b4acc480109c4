"""Build the docs site into _docs/ — `python scripts/docs.py` (or `bash scripts/docs.sh`).

1. nbdev processes every notebook as `nbdev-proc-nbs` does (its `FilterDefaults` processors: `#| hide` cells removed,
   `show_doc` executed and rendered, exports shown as API docs), into _site/proc/ (or $AXOLOTL_NB_DOCS_CACHE), cached by
   content hash; a notebook that fails is named with its error (the build fails). One difference: where nbdev would
   execute a whole cell because it contains an import and that cell fails (it needs context nbdev does not run), only
   its imports run; either way such a cell keeps its committed outputs.
2. The processed notebooks become pages under _site/pages/: the frontmatter becomes the title, Quarto directives are
   applied (`echo: false` drops the source) and removed, show_doc output becomes markdown, doc links become relative,
   and each module page opens with its pipeline stage (what it does and why) and ends with a link to the next stage.
3. mkdocs (material theme + mkdocs-jupyter) renders them with the sidebar in pipeline order (STAGES below), offline:
   no web fonts, MathJax served from the site.
"""
import json, os, re, shutil, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS, BUILD = ROOT/'nbs', ROOT/'_site'  # our own cache: nbdev-proc-nbs wipes _proc/ whenever pyproject.toml changes
PROC = Path(os.environ.get('AXOLOTL_NB_DOCS_CACHE', BUILD/'proc'))  # processed notebooks, keyed by content hash
SITE = BUILD/'pages'
DOC_HOST = 'https://axolotl-nb.github.io/axolotl_nb/'

# The pipeline, in order: (section title, what the stage does and why, notebook number prefixes: 00 = 00_config, 00a_…).
STAGES = [
    ('Config', "One YAML file drives the run. This stage reads it, checks every key against Axolotl's names and "
     "every combination against the rules, and normalizes it — so a typo or an illegal mix fails before any compute "
     "is spent.", ['00', '01']),
    ('Data', "Datasets become token ids and labels: prompt strategies render each example, the labels mask what the "
     "model should not learn (the prompt), and the result is cached with a preprocess report.",
     ['02', '03']),
    ('Packing', "Short examples are packed into full rows so no compute is spent on padding; block-diagonal masks "
     "keep packed examples from seeing each other, so packed training equals unpacked training.",
     ['04', '05']),
    ('Model and quantization', "The tokenizer and the model the config names — a Hub id, a folder or a GGUF file — "
     "loaded in NF4 or 8-bit when asked, so a big model fits a small GPU.", ['06']),
    ('Adapters', "LoRA and QLoRA train a few million adapter weights instead of billions of base weights; this stage "
     "injects them, and merges them back for serving.", ['07']),
    ('Distributed', "The same YAML trains across processes, GPUs and nodes: FSDP2, FSDP + QLoRA, DeepSpeed ZeRO and "
     "the launchers.", ['08']),
    ('Training', "The loss is computed from hidden states in chunks (never the full logits), the Trainer gets our "
     "sampler, collator and callbacks, and one run path does train → evaluate → save for every method.",
     ['09', '10', '11']),
    ('Preference and RL', "What DPO, IPO, ORPO, KTO, SimPO and GRPO add to the run path: their losses, their data "
     "and their trainers — switching method is one key (`rl:`).", ['12', '13', '14']),
    ('Evaluation, merge and inference', "Use the trained model: generate, chat in the terminal or a browser, and run "
     "every step from the command line.", ['15', '16']),
]
TUTORIAL_ORDER = ['quickstart', 'own_data', 'packing', 'dpo', 'from_axolotl', 'qlora_gpu']  # lesson order; others after

def _doc_filter():
    "nbdev's `FilterDefaults`, except that a cell executed only because it imports runs only its top-level imports."
    import ast
    from nbdev import processors as P
    class exec_docs(P.exec_show_docs):
        def __call__(self, cell):
            if cell.cell_type == 'code' and P._do_eval(cell) and hasattr(self, 'k') and self.nb.has_docs_:
                trees = cell.parsed_()
                shown = cell.directives_.keys() & {'export', 'exports', 'exporti', 'exec_doc'} or P._show_docs(trees)
                imps = [t for t in trees if isinstance(t, (ast.Import, ast.ImportFrom))]
                if not shown and imps and len(imps) < len(trees):  # imports + code: nbdev runs it all, and so do we,
                    self.k.run(cell.source)  # keeping the committed outputs; if it needs context nbdev did not run,
                    if self.k.exc: self.k.run('\n'.join(ast.unparse(t) for t in imps))  # only the imports
                    if self.k.exc: raise Exception(f"Error in cell {cell.idx_} (its imports):\n{cell.source}\n"
                                                   f"{type(self.k.exc).__name__}: {self.k.exc}")
                    return
            super().__call__(cell)
    class Filter(P.FilterDefaults):
        def base_procs(self): return [exec_docs if p is P.exec_show_docs else p for p in super().base_procs()]
    return Filter

def _proc_one(src:str) -> str|None:
    "Process one notebook with nbdev's doc processors (run in the notebook's folder, as nbdev-test does)."
    from nbdev.serve_drv import exec_nb
    s = Path(src)
    d = PROC/s.relative_to(NBS)
    d.parent.mkdir(parents=True, exist_ok=True)
    h = d.with_name(d.name + '.sha256')
    h.unlink(missing_ok=True)
    os.environ['IN_TEST'] = '1'
    os.chdir(s.parent)
    try: exec_nb(s, d, _doc_filter())
    except Exception as e:
        d.unlink(missing_ok=True)
        return f"{s.relative_to(ROOT)}: {str(e)[-1500:]}"
    finally: os.chdir(ROOT)
    h.write_text(_hash(s))
    return None

def proc_all(nbs:list[Path], workers:int=2) -> list[str]:
    "nbdev-process every notebook whose cached copy is stale in `workers` processes (torch imported once in each)."
    todo = [s for s in nbs if not _fresh(s)]
    if not todo: return []
    print(f"nbdev processing {len(todo)} notebook(s)", flush=True)
    def run(chunk:list[Path]) -> list[str]:
        r = subprocess.run([sys.executable, __file__, '--proc', *map(str, chunk)], capture_output=True, text=True,
                           cwd=ROOT)
        errs = [json.loads(ln)['error'] for ln in r.stdout.splitlines() if ln.startswith('{"error"')]
        return errs if r.returncode == 0 or errs else [f"{chunk}: {r.stderr[-2000:]}"]
    with ThreadPoolExecutor(workers) as ex: return sum(ex.map(run, [todo[i::workers] for i in range(workers)]), [])

def _hash(s:Path) -> str:
    import hashlib
    return hashlib.sha256(s.read_bytes() + (ROOT/'pyproject.toml').read_bytes()).hexdigest()

def _fresh(s:Path) -> bool:
    "Whether the processed copy of `s` was made from exactly this notebook (and pyproject.toml)."
    d = PROC/s.relative_to(NBS)
    h = d.with_name(d.name + '.sha256')
    return d.exists() and h.exists() and h.read_text() == _hash(s)

def _src(c:dict) -> str: return ''.join(c['source'])

def _md(text:str) -> dict: return dict(cell_type='markdown', metadata={}, source=text.splitlines(keepends=True))

def _directives(src:str) -> tuple[dict, str]:
    "Quarto/nbdev `#| key: value` lines at the top of a cell, and the rest of the source."
    lines, dirs = src.splitlines(), {}
    while lines and lines[0].startswith('#|'):
        k, _, v = lines.pop(0)[2:].strip().partition(':')
        dirs[k.strip()] = v.strip().lower()
    return dirs, '\n'.join(lines).strip('\n')

COLAB = 'https://colab.research.google.com/assets/colab-badge.svg'
COLAB_BADGE = ('<svg xmlns="http://www.w3.org/2000/svg" width="117" height="20"><rect rx="3" width="117" height="20" '
               'fill="#555"/><rect rx="3" x="34" width="83" height="20" fill="#f9ab00"/><text x="6" y="14" fill="#fff" '
               'font-family="Verdana,sans-serif" font-size="11">CO</text><text x="40" y="14" fill="#fff" '
               'font-family="Verdana,sans-serif" font-size="11">Open in Colab</text></svg>')  # served by the site

SOURCE_LINK = re.compile(r'\[source\]\((\S+?)\)\{[^}]*\}')

def relink(text:str, page:str) -> str:
    "Doc-host links → links relative to `page` (nbdev writes absolute https://…/name.html links)."
    up = '../' * page.count('/')
    text = text.replace(COLAB, f'{up}assets/colab-badge.svg')  # the badge image from the site, not from Google
    text = SOURCE_LINK.sub(r'<a class="source-link" href="\1" target="_blank">source</a>', text)
    text = re.sub(r'\]\((?:\.\./)*docs/benchmarks\.md\)', f']({up}benchmarks.html)', text)  # a page on the site
    return re.sub(re.escape(DOC_HOST) + r'([\w/.-]+?)\.html(?:\.md)?', lambda m: up + m[1] + '.html', text)

def frontmatter(nb:dict) -> dict:
    "The YAML frontmatter nbdev writes as the first raw cell (title, description, output-file)."
    import yaml
    c = nb['cells'][0] if nb['cells'] else None
    if not c or c['cell_type'] != 'raw' or not _src(c).startswith('---'): return {}
    nb['cells'].pop(0)
    return yaml.safe_load(_src(c).strip().strip('-')) or {}

def page_cells(nb:dict, page:str) -> list[dict]:
    "Cells as the site shows them: directives applied and removed, show_doc output as markdown, links relative."
    out = []
    for c in nb['cells']:
        if c['cell_type'] == 'markdown':
            c['source'] = relink(_src(c), page).splitlines(keepends=True)
            out.append(c)
            continue
        if c['cell_type'] != 'code': continue
        dirs, body = _directives(_src(c))
        outs = [] if dirs.get('output') == 'false' else c.get('outputs', [])
        for o in outs:
            for k in ('text/markdown', 'text/html'):
                if k in o.get('data', {}): o['data'][k] = relink(''.join(o['data'][k]), page)
        if dirs.get('echo') == 'false' or not body:
            mds = [o['data']['text/markdown'] for o in outs if 'text/markdown' in o.get('data', {})]
            if mds and len(mds) == len(outs):  # show_doc and other markdown-only output: a markdown cell
                out += [_md(m) for m in mds]
                continue
            if not outs: continue
            c['metadata'] = {**c.get('metadata', {}), 'tags': ['hide-input']}
        c['source'] = body.splitlines(keepends=True)
        c['outputs'] = outs
        out.append(c)
    return out

def pages() -> list[tuple[str, Path, str]]:
    "(site page, notebook, kind) for the home page, the tutorials and every module notebook of the stages."
    tuts = sorted((NBS/'tutorials').glob('*.ipynb'),
                  key=lambda p: (TUTORIAL_ORDER.index(p.stem) if p.stem in TUTORIAL_ORDER else 99, p.stem))
    mods = [p for _, _, ns in STAGES for n in ns for p in sorted(NBS.glob(f'{n}*.ipynb'))]
    return ([('index.ipynb', NBS/'index.ipynb', 'home')] + [(f'tutorials/{p.name}', p, 'tutorial') for p in tuts]
            + [(None, p, 'module') for p in mods])

def stage_of(stem:str) -> int: return next(i for i, (_, _, ns) in enumerate(STAGES) if stem[:2] in ns)

def build_pages() -> dict:
    "Write _proc/site/*; returns {'nav': …} for mkdocs."
    if SITE.exists(): shutil.rmtree(SITE)
    SITE.mkdir(parents=True)
    entries = []
    for page, src, kind in pages():
        if not _fresh(src):  # failed to process (reported by main), or edited while the site was building
            print(f"docs: no page for {src.relative_to(ROOT)} (not processed in its current state)", file=sys.stderr)
            continue
        nb = json.loads((PROC/src.relative_to(NBS)).read_text())
        fm = frontmatter(nb)
        if page is None: page = Path(fm.get('output-file', src.stem + '.html')).stem + '.ipynb'
        title = fm.get('title') or src.stem
        cells = page_cells(nb, page)
        head = f"# {title}\n\n" + (f"> {fm['description']}\n" if fm.get('description') else '')
        entries.append((page, src, kind, title, head, cells))
    modules = [e for e in entries if e[2] == 'module']
    for i, (page, src, kind, title, head, cells) in enumerate(entries):
        if kind == 'module':
            s = stage_of(src.stem)
            head += f"\n**Stage {s + 1} of {len(STAGES)}: {STAGES[s][0]}.** {STAGES[s][1]}\n"
            j = modules.index(entries[i]) + 1
            if j < len(modules):
                nxt = modules[j]
                ns = stage_of(nxt[1].stem)
                what = f"stage {ns + 1}, {STAGES[ns][0]}" if ns != s else f"more of stage {s + 1}"
                cells = cells + [_md(f"---\n\n**Next** ({what}): [{nxt[3]}]({nxt[0].replace('.ipynb', '.html')})")]
        cells = [_md(head)] + cells
        for k, c in enumerate(cells):  # valid nbformat 4.5: an id each, no nbdev execution timings in metadata
            c['id'] = f'c{k}'
            c['metadata'] = {'tags': c['metadata']['tags']} if 'tags' in c.get('metadata', {}) else {}
        meta = nb_meta() | {'axolotl_nb': {'source': src.relative_to(NBS).as_posix()}}  # the site test reads it
        nb_out = dict(cells=cells, metadata=meta, nbformat=4, nbformat_minor=5)
        (SITE/page).parent.mkdir(parents=True, exist_ok=True)
        (SITE/page).write_text(json.dumps(nb_out, indent=1, ensure_ascii=False))
    shutil.copy(ROOT/'docs'/'benchmarks.md', SITE/'benchmarks.md')
    nav = [{'Home': 'index.ipynb'}, {'Tutorials': [{e[3]: e[0]} for e in entries if e[2] == 'tutorial']}]
    for k, (name, _, ns) in enumerate(STAGES):
        items = [{e[3]: e[0]} for e in modules if e[1].stem[:2] in ns]
        if items: nav.append({f'{k + 1}. {name}': items})
    nav.append({'Benchmarks': 'benchmarks.md'})
    return {'nav': nav}

def nb_meta() -> dict:
    return {'kernelspec': {'display_name': 'Python 3', 'language': 'python', 'name': 'python3'},
            'language_info': {'name': 'python'}}

def mathjax():
    "MathJax 2 from the jupyter-server-mathjax wheel, served by the site (no CDN)."
    import importlib.util
    spec = importlib.util.find_spec('jupyter_server_mathjax')
    if spec is None: sys.exit("docs: pip install jupyter-server-mathjax --no-deps (the docs extra) for offline MathJax")
    static = Path(spec.submodule_search_locations[0])/'static'
    dst = SITE/'assets'/'mathjax'
    shutil.copytree(static, dst, ignore=shutil.ignore_patterns('localization', '*.md', 'LICENSE'))
    (SITE/'assets'/'mathjax-config.js').write_text(
        'window.MathJax = {config: ["TeX-AMS-MML_HTMLorMML-full.js"], messageStyle: "none",\n'
        '  "fast-preview": {disabled: true}, AssistiveMML: {disabled: true}, MMLorHTML: {prefer: "HTML"},\n'
        '  menuSettings: {CHTMLpreview: false, assistiveMML: false},\n'
        '  tex2jax: {inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]], processEscapes: true},\n'
        '  "HTML-CSS": {availableFonts: ["STIX-Web"], preferredFont: "STIX-Web", webFont: "STIX-Web",\n'
        '    imageFont: null,\n'
        '    styles: {"@font-face": {"font-family": "MathJax_Blank", src: "local(\'MathJax_Blank\')"}}}};\n')
    # (MathJax's default MathJax_Blank face is url('about:blank'), which Chromium logs as an error on every page;
    # its fast preview (CommonHTML), its native-MathML output (which Chromium now gets) and the hidden MathML copy of
    # AssistiveMML all pull TeX web fonts the wheel does not ship — a \mathbb symbol 404ed; HTML-CSS with STIX-Web,
    # which the wheel has, renders everything)
    (SITE/'assets'/'colab-badge.svg').write_text(COLAB_BADGE)
    shutil.copy(ROOT/'docs'/'extra.css', SITE/'assets'/'extra.css')

def main() -> int:
    nbs = [p for _, p, _ in pages()]
    failed = [] if '--no-proc' in sys.argv else proc_all(nbs)  # --no-proc: pages from the cache as it is
    for f in failed: print(f"FAILED {f}\n", file=sys.stderr)
    cfg = build_pages()
    mathjax()
    nav = json.dumps(cfg['nav'], ensure_ascii=False)  # JSON is YAML
    (BUILD/'mkdocs.yml').write_text(f"INHERIT: ../mkdocs.yml\ndocs_dir: pages\nsite_dir: ../_docs\nnav: {nav}\n")
    r = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--clean', '-q', '-f', BUILD/'mkdocs.yml'], cwd=ROOT)
    if r.returncode: return r.returncode
    n = len(list((ROOT/'_docs').rglob('*.html')))
    print(f"site: {ROOT/'_docs'} ({n} html files); preview: python -m http.server -d _docs 8000")
    if failed: print(f"docs: {len(failed)} notebook(s) failed to process; their pages are missing", file=sys.stderr)
    return 1 if failed else 0

if __name__ == '__main__':
    if sys.argv[1:2] == ['--proc']:  # worker: process these notebooks, one JSON line per failure
        for nb in sys.argv[2:]:
            if err := _proc_one(nb): print(json.dumps({'error': err}), flush=True)
        sys.exit(0)
    sys.exit(main())
