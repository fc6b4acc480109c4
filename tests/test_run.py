"""The one run path gives every method every feature: SFT, DPO and GRPO each resume, stop loudly on divergence,
and write a loss curve, TensorBoard events and a summary."""
import contextlib, io, json
from pathlib import Path

import pytest

from axolotl_nb import grpo, preference, run
from axolotl_nb.load import load_config
from axolotl_nb.callbacks import TrainingDiverged
from toys import method_cfg, method_data, write_yaml

METHODS = {'sft': None, 'dpo': preference.method, 'grpo': lambda cfg: grpo.GRPO}


@pytest.fixture(scope='module')
def work(tmp_path_factory) -> Path:
    return method_data(tmp_path_factory.mktemp('run'), 'run_rewards', n_prompts=24)


RUN = dict(val_set_size=0.25, learning_rate=1e-3, max_steps=2, save_steps=2, seed=0, use_tensorboard=True)


def cfg_for(d:Path, method:str, out:str, **kw):
    "The loaded config of a 2-step run of `method` (`kw` wins), from a YAML file of its own."
    p = d/f'{out}-{len(list(d.glob("*.yml")))}.yml'
    return load_config(write_yaml(p, method_cfg(d, method, out, 'run_rewards', **(RUN | kw))))


def train(method:str, cfg):
    "run.train with the method's hook; returns (summary, stderr)."
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        s = run.train(cfg, METHODS[method](cfg) if METHODS[method] else None)
    return s, err.getvalue()


@pytest.mark.parametrize('method', list(METHODS))
def test_every_method_gets_every_feature(work, method):
    "Summary, loss curve, TensorBoard events, final eval and the saved adapter; then an auto-resume that says so."
    s, _ = train(method, cfg_for(work, method, f'{method}-out'))
    out = Path(s.output_dir)
    assert s.method == method and s.steps == 2 and s.train_loss is not None
    summary = json.loads((out/'training_summary.json').read_text())
    assert summary['method'] == method and summary['steps'] == 2
    assert (out/'loss_curve.png').stat().st_size > 1000
    assert list((out/'runs').rglob('events.out.tfevents.*')), 'no TensorBoard events'
    assert (out/'adapter_model.safetensors').exists() and (out/run.CONFIG_NAME).exists()
    assert s.eval_loss is not None and summary['eval_loss'] == s.eval_loss, 'no final eval'
    s2, err = train(method, cfg_for(work, method, f'{method}-out', max_steps=3, auto_resume_from_checkpoints=True))
    assert s2.steps == 3 and Path(s2.resumed_from).name == 'checkpoint-2'
    assert f"resuming from {out/'checkpoint-2'}" in err


@pytest.mark.parametrize('method', list(METHODS))
def test_every_method_stops_loudly_on_divergence(work, method):
    "learning_rate 1e3: exit code 5, a message naming the step and what to try; output kept aside, good one untouched."
    good = work/f'{method}-div'
    train(method, cfg_for(work, method, f'{method}-div', save_strategy='no'))
    before = (good/'adapter_model.safetensors').read_bytes()
    with pytest.raises(TrainingDiverged) as e:
        train(method, cfg_for(work, method, f'{method}-div', learning_rate=1e3, max_steps=20, save_strategy='no'))
    msg = str(e.value)
    assert e.value.exit_code == 5 and 'at step ' in msg and 'learning_rate' in msg, msg
    step = int(msg.split('at step ')[1].split()[0])
    assert (good/f'diverged-step-{step}'/'adapter_model.safetensors').exists()
    assert (good/'adapter_model.safetensors').read_bytes() == before


def test_unfrozen_parameters_train_only_what_matches(work):
    "Full fine-tune with `unfrozen_parameters`: the saved model differs from the base exactly in the matching weights."
    from safetensors.torch import load_file
    full = dict(adapter=None, lora_r=None, lora_alpha=None, lora_target_linear=None, val_set_size=0,
                use_tensorboard=False, unfrozen_parameters=['model.layers.0.mlp.', 'lm_head'])
    s, _ = train('sft', cfg_for(work, 'sft', 'unfrozen', **full))
    base, out = load_file(str(work/'tiny'/'model.safetensors')), load_file(str(Path(s.output_dir)/'model.safetensors'))
    moved = {k for k in base if not (base[k] == out[k]).all()}
    assert moved == {'model.layers.0.mlp.gate_proj.weight', 'model.layers.0.mlp.up_proj.weight',
                     'model.layers.0.mlp.down_proj.weight', 'lm_head.weight'}, moved
