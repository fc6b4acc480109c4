"CLI end to end: every example config validates, bad configs exit 2 with their problems, --help works everywhere."
import subprocess, sys
from pathlib import Path
import pytest, yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT/'examples').glob('*.yml'))

def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, '-m', 'axolotl_nb.cli', *map(str, args)], capture_output=True, text=True, cwd=cwd)

@pytest.mark.parametrize('path', EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_validate(path):
    r = cli('validate', path)
    assert r.returncode == 0, r.stderr
    assert 'method' in r.stdout and 'base_model:' in r.stdout

def test_examples_cover_methods():
    names = {p.stem for p in EXAMPLES}
    assert {'quickstart', 'lora', 'qlora', 'full_finetune', 'dpo', 'orpo', 'kto', 'grpo', 'fsdp'} <= names, names

def test_bad_config_exit_2(tmp_path):
    cfg = yaml.safe_load((ROOT/'examples'/'quickstart.yml').read_text())
    cfg |= {'lora_rank': 8, 'load_in_8bit': True, 'adapter': 'qlora'}
    (tmp_path/'bad.yml').write_text(yaml.safe_dump(cfg))
    r = cli('validate', tmp_path/'bad.yml')
    assert r.returncode == 2
    assert 'did you mean `lora_r`' in r.stderr and 'load_in_8bit' in r.stderr and 'Traceback' not in r.stderr

def test_yaml_syntax_error_names_line(tmp_path):
    (tmp_path/'c.yml').write_text('base_model: x\ndatasets:\n  - path: [a\n')
    r = cli('validate', tmp_path/'c.yml')
    assert r.returncode == 1 and 'c.yml:4:' in r.stderr, r.stderr

def test_override_typed_and_validated():
    r = cli('validate', ROOT/'examples'/'quickstart.yml', '--lora_r=32', '--learning_rate', '3e-4')
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout.split('---\n', 1)[1])['lora_r'] == 32
    r = cli('validate', ROOT/'examples'/'quickstart.yml', '--lora_r', 'many')
    assert r.returncode == 2 and 'lora_r' in r.stderr

@pytest.mark.parametrize('cmd', ['validate', 'preprocess', 'train', 'evaluate', 'merge-lora', 'inference'])
def test_help(cmd):
    r = cli(cmd, '--help')
    assert r.returncode == 0 and 'CONFIG' in r.stdout.upper()

def test_readme_in_sync_with_index():
    r = subprocess.run([sys.executable, ROOT/'scripts'/'readme.py', '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    readme = (ROOT/'README.md').read_text()
    assert 'bash scripts/quickstart.sh' in readme and 'bash scripts/test.sh' in readme
