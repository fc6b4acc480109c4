"The offline quickstart end to end on the real SmolLM2 model (slow: minutes on CPU). Run with AXOLOTL_NB_SLOW=1."
import importlib.util, json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent

@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get('AXOLOTL_NB_SLOW'), reason="slow: set AXOLOTL_NB_SLOW=1 to run it")
def test_quickstart_improves(tmp_path):
    "scripts/quickstart.py trains, and eval loss + exact-match accuracy improve; merge and generation work."
    out = tmp_path/'qs'
    r = subprocess.run([sys.executable, str(ROOT/'scripts'/'quickstart.py'), str(ROOT/'examples'/'quickstart.yml'),
                        '--output_dir', str(out)], capture_output=True, text=True, cwd=ROOT, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((out/'quickstart_result.json').read_text())
    assert res['after']['eval_loss'] < res['before']['eval_loss']
    assert res['after']['accuracy'] >= res['before']['accuracy'] + 0.5
    assert (out/'merged'/'config.json').exists() and (out/'loss_curve.png').exists()

def _quickstart_module():
    spec = importlib.util.spec_from_file_location('quickstart', ROOT/'scripts'/'quickstart.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

def test_quickstart_refuses_a_folder_it_did_not_create(tmp_path):
    "`--output_dir` naming a folder with the user's files: refused with a message, nothing deleted, nothing loaded."
    user = tmp_path/'mine'
    user.mkdir()
    (user/'notes.txt').write_text('my work')
    r = subprocess.run([sys.executable, str(ROOT/'scripts'/'quickstart.py'), str(ROOT/'examples'/'quickstart.yml'),
                        '--output_dir', str(user)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and 'holds no quickstart run' in r.stderr and str(user) in r.stderr, r.stderr
    assert (user/'notes.txt').read_text() == 'my work' and sorted(p.name for p in user.iterdir()) == ['notes.txt']

def test_fresh_output_dir_replaces_only_its_own_runs(tmp_path):
    qs = _quickstart_module()
    assert qs.fresh_output_dir(tmp_path/'new') is None and (tmp_path/'new'/qs.MARKER).exists()
    (tmp_path/'new'/'adapter_model.safetensors').write_text('old run')
    assert qs.fresh_output_dir(tmp_path/'new') is None  # a previous quickstart run (marker present) is replaced
    assert sorted(p.name for p in (tmp_path/'new').iterdir()) == [qs.MARKER]
    (tmp_path/'empty').mkdir()
    assert qs.fresh_output_dir(tmp_path/'empty') is None  # an empty folder is used as it is
    (tmp_path/'f').write_text('a file')
    assert 'is a file' in qs.fresh_output_dir(tmp_path/'f') and (tmp_path/'f').read_text() == 'a file'
