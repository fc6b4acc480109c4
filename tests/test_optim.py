"""Every optimizer and schedule through the real run path (`run.train` on a tiny model): losses fall, Axolotl's
schedule keys shape the logged learning rate exactly as Axolotl's own functions do, Muon checkpoints resume, and
NEFTune noises training but not evaluation."""
import contextlib, io, json, subprocess
from pathlib import Path

import pytest
import torch

from axolotl_nb import run
from axolotl_nb.optim import OPTIMIZERS, cosine_lr
from axolotl_nb.load import load_config
from toys import sft_rows, tiny_work, toy_preferences, toy_tokenizer, write_yaml

AXOLOTL_PY = Path('/work/axolotl-venv/bin/python')


@pytest.fixture(scope='module')
def work(tmp_path_factory) -> Path:
    return tiny_work(tmp_path_factory.mktemp('optim'), {'sft.jsonl': sft_rows(toy_preferences(32))}, hidden_size=64,
                     num_layers=2, tokenizer=toy_tokenizer())


def cfg_for(d:Path, out:str, **kw):
    c = dict(base_model=str(d/'tiny'), datasets=[dict(path=str(d/'sft.jsonl'), type='alpaca')],
             dataset_prepared_path=str(d/'prep'), output_dir=str(d/out), sequence_len=64, micro_batch_size=8,
             learning_rate=1e-2, max_steps=6, logging_steps=1, save_steps=6, seed=0, lr_scheduler='constant')
    return load_config(write_yaml(d/f'{out}.yml', c | kw))


def train(cfg):
    with contextlib.redirect_stderr(io.StringIO()): return run.train(cfg)


def history(s) -> list[dict]:
    return json.loads((Path(s.output_dir)/f'checkpoint-{s.steps}'/'trainer_state.json').read_text())['log_history']


@pytest.mark.parametrize('name', list(OPTIMIZERS))
def test_every_optimizer_trains(work, name):
    "Full fine-tune, a few steps on the same batches: the loss falls for every optimizer name."
    lr = 1e-3 if 'lion' in name else 1e-1 if name == 'sgd' else 1e-2  # Lion's sign steps want less, SGD more
    s = train(cfg_for(work, f'opt-{name}', optimizer=name, learning_rate=lr))
    losses = [h['loss'] for h in history(s) if 'loss' in h]
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.3, losses


def test_muon_checkpoint_resumes(work):
    "Muon + AdamW state goes into one optimizer.pt and comes back on resume; lr_groups reach the optimizer."
    kw = dict(optimizer='muon', lr_groups=[dict(name='attn', modules=['self_attn'], lr=1e-3)], max_steps=3,
              save_steps=3)
    s = train(cfg_for(work, 'muon', **kw))
    sd = torch.load(Path(s.output_dir)/'checkpoint-3'/'optimizer.pt', weights_only=False)
    assert [len(o['param_groups']) for o in sd['optimizers']] == [2, 1], sd['optimizers'][0]['param_groups']
    assert sorted(g['lr'] for g in sd['optimizers'][0]['param_groups']) == [1e-3, 1e-2]
    s2 = train(cfg_for(work, 'muon', **kw | dict(max_steps=5, auto_resume_from_checkpoints=True)))
    assert s2.resumed_from and s2.resumed_from.endswith('checkpoint-3') and s2.steps == 5


@pytest.mark.parametrize('keys', [dict(cosine_min_lr_ratio=0.1), dict(lr_quadratic_warmup=True),
                                  dict(cosine_min_lr_ratio=0.2, cosine_constant_lr_ratio=0.5)])
def test_schedule_keys_shape_the_logged_lr(work, keys):
    "The trainer logs lr = peak × cosine_lr(step) (HF logs the rate the next step will use)."
    s = train(cfg_for(work, 'sched', lr_scheduler='cosine', warmup_steps=2, max_steps=8, save_steps=8, **keys))
    got = [(h['step'], h['learning_rate']) for h in history(s) if 'learning_rate' in h]
    f = dict(floor=keys.get('cosine_min_lr_ratio', 0.0), end=keys.get('cosine_constant_lr_ratio', 1.0),
             quadratic=keys.get('lr_quadratic_warmup', False))
    want = [(st, 1e-2 * cosine_lr(st - 1, 2, 8, **f)) for st, _ in got]
    assert [g[0] for g in got] == list(range(1, 9))
    assert all(abs(a[1] - b[1]) < 1e-9 for a, b in zip(got, want)), (got, want)


@pytest.mark.skipif(not AXOLOTL_PY.exists(), reason='the Axolotl reference install is not here')
def test_schedules_match_axolotl():
    "cosine_lr against axolotl.utils.schedulers' own lambdas, every step of a 100-step run."
    code = ("import json; from axolotl.utils import schedulers as s; R = range(101)\n"
            "print(json.dumps([[s._get_cosine_schedule_with_min_lr_lambda(i, num_warmup_steps=10, "
            "num_training_steps=100, min_lr_ratio=0.1) for i in R],\n"
            " [s._get_cosine_schedule_with_warmup_decay_constant_lr_lambda(i, num_warmup_steps=10, "
            "num_training_steps=100, constant_lr_ratio=0.8, min_lr_ratio=0.1, num_cycles=0.5) for i in R],\n"
            " [s._get_cosine_schedule_with_quadratic_warmup_lr_lambda(i, num_warmup_steps=10, "
            "num_training_steps=100, num_cycles=0.5) for i in R]]))")
    out = subprocess.run([str(AXOLOTL_PY), '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    ref = json.loads(out.stdout.strip().splitlines()[-1])
    ours = [[cosine_lr(i, 10, 100, floor=0.1) for i in range(101)],
            [cosine_lr(i, 10, 100, floor=0.1, end=0.8) for i in range(101)],
            [cosine_lr(i, 10, 100, quadratic=True) for i in range(101)]]
    for a, b in zip(ours, ref): assert max(abs(x - y) for x, y in zip(a, b)) < 1e-12


def test_neftune_noises_training_not_eval(work):
    "Same seed and data: NEFTune changes the training losses; the eval loss logged mid-training is the clean one."
    base = dict(val_set_size=0.25, eval_steps=3, max_steps=3, save_steps=3, lr_scheduler='constant')
    plain = train(cfg_for(work, 'plain', **base))
    ncfg = cfg_for(work, 'neft', neftune_noise_alpha=50.0, **base)
    noisy = train(ncfg)
    lp = [h['loss'] for h in history(plain) if 'loss' in h]
    ln = [h['loss'] for h in history(noisy) if 'loss' in h]
    assert abs(lp[0] - ln[0]) > 1e-4, (lp, ln)  # the first forward already sees the noise
    mid = next(h['eval_loss'] for h in history(noisy) if 'eval_loss' in h)  # evaluated inside train(), hook on
    again = run.evaluate(ncfg)['eval_loss']  # the saved weights, no hook anywhere
    assert abs(mid - again) < 1e-5, (mid, again)
