"The offline quickstart end to end on the real SmolLM2 model (slow: minutes on CPU). Run with AXOLOTL_NB_SLOW=1."
import json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent

@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get('AXOLOTL_NB_SLOW'), reason="slow: set AXOLOTL_NB_SLOW=1 to run the full quickstart")
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
