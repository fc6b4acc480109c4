"""The package as a user gets it: build the wheel, install it (not editable) into a fresh venv, and run the CLI from a
folder outside the repo on a shipped example and a shipped DeepSpeed preset. No network: the fresh venv borrows this
venv's installed dependencies through a .pth line (which does not activate the editable install of axolotl_nb)."""
import ast, importlib.metadata as md, os, re, shutil, subprocess, sys, sysconfig, tomllib, zipfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT/'pyproject.toml').read_text())
SRC = ['pyproject.toml', 'README.md', 'axolotl_nb', 'examples', 'deepspeed_configs']

def _dist(req:str) -> str: return re.split(r'[<>=!~\[ ;]', req, maxsplit=1)[0].lower().replace('_', '-')

@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> Path:
    "Build the wheel from a copy of the sources (the build writes build/ and *.egg-info next to them)."
    tmp = tmp_path_factory.mktemp('wheel')
    (tmp/'src').mkdir()
    for name in SRC:
        s = ROOT/name
        if s.is_dir(): shutil.copytree(s, tmp/'src'/name, symlinks=True, ignore=shutil.ignore_patterns('__pycache__'))
        else: shutil.copy2(s, tmp/'src'/name)
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index', '-q',
                        '-w', tmp/'dist', tmp/'src'], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return next((tmp/'dist').glob('axolotl_nb-*.whl'))

def test_wheel_ships_examples_and_presets(wheel):
    "Every example config, its data and every DeepSpeed preset are in the wheel as real files under axolotl_nb/."
    names = set(zipfile.ZipFile(wheel).namelist())
    want = [f'axolotl_nb/examples/{p.name}' for p in (ROOT/'examples').glob('*.yml')]
    want += [f'axolotl_nb/examples/data/{p.name}' for p in (ROOT/'examples'/'data').iterdir()]
    want += [f'axolotl_nb/deepspeed_configs/{p.name}' for p in (ROOT/'deepspeed_configs').glob('*.json')]
    assert len(want) > 20 and not set(want) - names, sorted(set(want) - names)
    own = [p for p in (ROOT/'axolotl_nb').iterdir() if p.is_file() and p.suffix != '.pyc']  # modules, key registry
    assert {f'axolotl_nb/{p.name}' for p in own} <= names, sorted({f'axolotl_nb/{p.name}' for p in own} - names)

@pytest.fixture(scope='module')
def venv(wheel, tmp_path_factory) -> Path:
    "A fresh venv with the wheel installed non-editable; dependencies come from this venv's site-packages."
    v = tmp_path_factory.mktemp('venv')/'v'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', v], check=True)
    site = Path(subprocess.run([v/'bin'/'python', '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site/'_borrowed_deps.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    r = subprocess.run([sys.executable, '-m', 'pip', '--python', v/'bin'/'python', 'install', '--no-deps', '--no-index',
                        '-q', wheel], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return v

def _run(venv, *args, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')} | {'HF_HUB_OFFLINE': '1'}
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)

def test_installed_cli_validates_shipped_example_and_preset(venv, tmp_path):
    "From outside the repo: the installed package (not the checkout) validates pkg:// examples with a DeepSpeed preset."
    r = _run(venv, venv/'bin'/'python', '-c', 'import axolotl_nb; print(axolotl_nb.__file__)', cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith(str(venv)), r.stdout + r.stderr
    r = _run(venv, venv/'bin'/'axolotl-nb', 'validate', 'pkg://axolotl_nb/examples/lora.yml', '--deepspeed', 'zero2',
             cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    ds = r.stdout.split('deepspeed config: ')[1].split('\n')[0]
    assert ds.startswith(str(venv)) and ds.endswith('deepspeed_configs/zero2.json'), ds
    r = _run(venv, venv/'bin'/'axolotl-nb', 'validate', 'pkg://axolotl_nb/examples/dpo.yml', '--deepspeed', 'zero7',
             cwd=tmp_path)
    assert r.returncode != 0 and 'zero2' in r.stderr and 'Traceback' not in r.stderr, r.stderr

def _module_level_imports(path:Path) -> set[str]:
    "Top-level package names a module imports at module level (not inside functions or try blocks)."
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import): out |= {a.name.split('.')[0] for a in node.names}
        if isinstance(node, ast.ImportFrom) and not node.level: out.add(node.module.split('.')[0])
    return out - set(sys.stdlib_module_names) - {'axolotl_nb', '__future__'}

def test_dependencies_match_imports():
    "Every package the library imports at module level is a dependency; notebook-only packages (pandas) are not."
    deps = {_dist(d) for d in PYPROJECT['project']['dependencies']}
    dists = md.packages_distributions()
    imported = set().union(*(_module_level_imports(p) for p in (ROOT/'axolotl_nb').glob('*.py')))
    needed = {_dist(dists[m][0]) if m in dists else m for m in imported}
    assert not needed - deps, f"imported by axolotl_nb but not in [project] dependencies: {sorted(needed - deps)}"
    for nb_only in ('pandas', 'fastcore'):
        if nb_only not in needed: assert nb_only not in deps, f"{nb_only} is a dependency; the library never imports it"
