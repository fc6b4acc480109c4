"CLI end to end: every example config validates, bad configs exit 2 with their problems, --help works everywhere."
import subprocess, sys
from pathlib import Path
import pytest, yaml
from axolotl_nb.cli import COMMANDS, FLAGS, TOOLS, main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT/'examples').glob('*.yml'))

def cli(capsys, *args) -> tuple[int, str, str]:
    "Run `axolotl-nb ARGS` in-process (the imports are paid once per session); returns (exit code, stdout, stderr)."
    try: rc = main([str(a) for a in args])
    except SystemExit as e: rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err

@pytest.mark.parametrize('path', EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_validate(path, capsys):
    rc, out, err = cli(capsys, 'validate', path)
    assert rc == 0, err
    assert 'method' in out and 'base_model:' in out

def test_examples_cover_methods():
    names = {p.stem for p in EXAMPLES}
    assert {'quickstart', 'lora', 'qlora', 'full_finetune', 'dpo', 'orpo', 'kto', 'grpo', 'fsdp'} <= names, names

def test_shipped_example_by_pkg_uri(capsys, tmp_path, monkeypatch):
    "pkg://axolotl_nb/examples/… validates from a folder that is not the repo; a wrong name lists the shipped ones."
    monkeypatch.chdir(tmp_path)
    rc, out, err = cli(capsys, 'validate', 'pkg://axolotl_nb/examples/dpo.yml')
    assert rc == 0, err
    assert yaml.safe_load(out.split('---\n', 1)[1])['rl'] == 'dpo'
    rc, out, err = cli(capsys, 'validate', 'pkg://axolotl_nb/examples/dop.yml')
    assert rc == 1 and 'pkg://axolotl_nb/examples/dpo.yml' in err, err

def test_bad_config_exit_2(tmp_path, capsys):
    cfg = yaml.safe_load((ROOT/'examples'/'quickstart.yml').read_text())
    cfg |= {'lora_rank': 8, 'load_in_8bit': True, 'adapter': 'qlora'}
    (tmp_path/'bad.yml').write_text(yaml.safe_dump(cfg))
    rc, out, err = cli(capsys, 'validate', tmp_path/'bad.yml')
    assert rc == 2
    assert 'did you mean `lora_r`' in err and 'load_in_8bit' in err and 'Traceback' not in err

def test_validate_checks_the_stream_path(tmp_path, capsys):
    "A `pretraining_dataset` file is opened only at train time, so `validate` checks its path and split up front."
    cfg = yaml.safe_load((ROOT/'examples'/'pretraining.yml').read_text())
    (tmp_path/'docs.jsonl').write_text('{"text": "a document"}\n')
    for entry, problem in [({'path': 'docs.jsonl'}, None), ({'path': 'doc.jsonl'}, 'pretraining_dataset[0].path'),
                           ({'path': 'docs.jsonl', 'split': 'train[:100]'}, 'pretraining_dataset[0].split')]:
        (tmp_path/'c.yml').write_text(yaml.safe_dump(cfg | {'pretraining_dataset': [entry]}))
        rc, out, err = cli(capsys, 'validate', tmp_path/'c.yml')
        assert (rc, problem is None or f"- {problem}:" in err) == (0 if problem is None else 2, True), (entry, err)

def test_yaml_syntax_error_names_line(tmp_path, capsys):
    (tmp_path/'c.yml').write_text('base_model: x\ndatasets:\n  - path: [a\n')
    rc, out, err = cli(capsys, 'validate', tmp_path/'c.yml')
    assert rc == 2 and 'c.yml:4:' in err, err

def test_override_typed_and_validated(capsys):
    rc, out, err = cli(capsys, 'validate', ROOT/'examples'/'quickstart.yml', '--lora_r=32', '--learning_rate', '3e-4')
    assert rc == 0, err
    assert yaml.safe_load(out.split('---\n', 1)[1])['lora_r'] == 32
    rc, out, err = cli(capsys, 'validate', ROOT/'examples'/'quickstart.yml', '--lora_r', 'many')
    assert rc == 2 and 'lora_r' in err

def test_override_without_value(capsys):
    "`--lora_r` with no value is an error naming the override (it used to become `lora_r: true`, i.e. rank 1)."
    rc, out, err = cli(capsys, 'validate', ROOT/'examples'/'quickstart.yml', '--lora_r')
    assert rc != 0 and 'override --lora_r has no value' in err and 'Traceback' not in err, err

def test_config_keys(capsys):
    rc, out, err = cli(capsys, 'config-keys', 'lora_*')
    assert rc == 0, err
    keys = [line.split()[0] for line in out.splitlines()[1:]]
    assert 'lora_r' in keys and 'lora_alpha' in keys and all(k.startswith('lora_') for k in keys), keys
    rc, out, err = cli(capsys, 'config-keys')
    assert rc == 0 and len(out.splitlines()) > 300 and 'datasets[].type' in out

@pytest.mark.parametrize('cmd', [*COMMANDS, *TOOLS])
def test_help(cmd, capsys):
    "Each command's --help shows its own usage line, its argument, its description and every flag it defines."
    rc, out, err = cli(capsys, cmd, '--help')
    assert rc == 0, err
    usage = out.split('\n\n')[0]
    assert usage.startswith(f'usage: axolotl-nb {cmd} ') and ('PATTERN' if cmd in TOOLS else 'CONFIG') in usage, out
    assert (COMMANDS | TOOLS)[cmd].__doc__ in ' '.join(out.split())  # argparse re-wraps the description
    for flag in FLAGS.get(cmd, {}): assert flag in out, (cmd, flag)

def test_module_entry_point():
    "`python -m axolotl_nb.cli` is the entry point launchers re-execute; without a command it prints usage and exits 2."
    r = subprocess.run([sys.executable, '-m', 'axolotl_nb.cli'], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and 'usage: axolotl-nb' in r.stderr and 'required' in r.stderr, r.stderr

def test_readme_in_sync_with_index():
    r = subprocess.run([sys.executable, ROOT/'scripts'/'readme.py', '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    readme = (ROOT/'README.md').read_text()
    assert 'bash scripts/quickstart.sh' in readme and 'bash scripts/test.sh' in readme
