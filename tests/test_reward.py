"""Reward models through the one run path: centering pulls rewards to zero, train/evaluate/score agree, and (slow) a
short SmolLM2 run on the shipped date-preference pairs reaches held-out accuracy > 0.9."""
import json
from pathlib import Path

import pytest
import yaml

from axolotl_nb import reward
from axolotl_nb.load import load_config
from toys import tiny_work, toy_preferences, toy_tokenizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def work(tmp_path_factory) -> Path:
    return tiny_work(tmp_path_factory.mktemp('reward'), {'pairs.jsonl': toy_preferences(32)}, hidden_size=32,
                     num_layers=1, tokenizer=toy_tokenizer())


def tiny(work:Path, out:str, **kw):
    return load_config(dict(base_model=str(work/'tiny'), datasets=[dict(path=str(work/'pairs.jsonl'),
                       type='bradley_terry.chat_template')], output_dir=str(work/out), reward_model=True,
                       sequence_len=64, micro_batch_size=8, val_set_size=0.25, learning_rate=3e-3, num_epochs=2,
                       logging_steps=1, save_strategy='no', seed=0, adapter='lora', lora_r=8, lora_alpha=16,
                       lora_target_linear=True) | kw)


def test_centering_pulls_rewards_to_zero(work):
    "center_rewards_coefficient adds λ·mean((r_c + r_r)²): with a large λ the trained mean reward sits nearer 0."
    free = reward.train(tiny(work, 'free', learning_rate=3e-2))
    held = reward.train(tiny(work, 'held', learning_rate=3e-2, center_rewards_coefficient=1.0))
    mean = lambda s: abs(s.metrics['eval_mean_reward'])
    assert mean(held) < mean(free) / 2, (free.metrics, held.metrics)


def test_train_evaluate_score_agree(work):
    "evaluate() reloads the saved adapter + head and reproduces the run's eval accuracy; score() ranks the same way."
    s = reward.train(tiny(work, 'agree'))
    res = reward.evaluate(tiny(work, 'agree'))
    assert res['eval_accuracy'] == pytest.approx(s.metrics['eval_accuracy'])
    assert res['eval_loss'] == pytest.approx(s.eval_loss, rel=1e-4)
    rows = toy_preferences(8, seed=1)
    conv = lambda r, k: [{'role': 'user', 'content': r['prompt']}, {'role': 'assistant', 'content': r[k]}]
    sc = reward.score(tiny(work, 'agree'), [conv(r, 'chosen') for r in rows] + [conv(r, 'rejected') for r in rows])
    assert sum(c > r for c, r in zip(sc[:8], sc[8:])) >= 7, sc


@pytest.mark.slow
def test_smollm2_reward_model(tmp_path):
    "examples/reward_model.yml (SmolLM2-135M LoRA, 240 date-preference pairs, 1 epoch): held-out accuracy > 0.9."
    raw = yaml.safe_load((ROOT/'examples'/'reward_model.yml').read_text())
    for k in ('datasets', 'test_datasets'): raw[k] = [dict(d, path=str(ROOT/'examples'/d['path'])) for d in raw[k]]
    raw |= dict(output_dir=str(tmp_path/'rm'), dataset_prepared_path=str(tmp_path/'prep'))
    s = reward.train(load_config(raw))
    assert s.metrics['eval_accuracy'] > 0.9, s.metrics


def test_reward_uses_the_configured_schedule(work):
    "`cosine_min_lr_ratio` (axolotl_nb.optim) reaches the reward trainer: the logged lr never drops below the floor."
    cfg = tiny(work, 'floor', num_epochs=1, max_steps=3, val_set_size=0.0, lr_scheduler='cosine',
               cosine_min_lr_ratio=0.5, save_strategy='steps', save_steps=3)
    reward.train(cfg)
    hist = json.loads((work/'floor'/'checkpoint-3'/'trainer_state.json').read_text())['log_history']
    lrs = [h['learning_rate'] for h in hist if 'learning_rate' in h]
    assert len(lrs) == 3 and min(lrs) >= 0.5 * 3e-3 - 1e-12 and min(lrs) < 3e-3, lrs  # HF's cosine would reach ~0
