"End-to-end CLI tests for preference training (DPO/ORPO/KTO) and GRPO error paths, on a tiny random model."

import json
from pathlib import Path

import pytest

from axolotl_nb import grpo, preference
from axolotl_nb.load import load_config
from axolotl_nb.run import train
from toys import LORA, cli, free_port, tiny_work, toy_preferences, toy_tokenizer, write_yaml


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    files = {'pref.jsonl': toy_preferences(48), 'kto.jsonl': toy_preferences(48, kto=True),
             'prompts.jsonl': [{'prompt': 'please help me', 'answer': 'thank'}] * 16}
    return tiny_work(tmp_path_factory.mktemp('pref'), files, tokenizer=toy_tokenizer())


def write_cfg(d: Path, name: str, **kw) -> Path:
    cfg = (
        dict(
            base_model=str(d / 'tiny'),
            **LORA,
            val_set_size=0.25,
            micro_batch_size=8,
            max_steps=6,
            learning_rate=5e-3,
            lr_scheduler='constant',
            sequence_len=64,
            output_dir=str(d / f'out-{name}'),
            dataset_prepared_path=str(d / 'prep'),
            use_tensorboard=False,
            save_strategy='no',
            logging_steps=1,
            seed=0,
        )
        | kw
    )
    return write_yaml(d / f'{name}.yml', cfg)


def test_dpo_train_evaluate_merge(work):
    "rl: dpo learns the toy preference and saves an adapter; evaluate reports rewards; merge-lora works."
    cfg = write_cfg(work, 'dpo', rl='dpo', datasets=[dict(path=str(work / 'pref.jsonl'), type='prompt_pairs')])
    r = cli('train', cfg)
    assert r.returncode == 0, r.stderr[-3000:]
    out = work / 'out-dpo'
    assert (out / 'adapter_config.json').exists() and (out / 'axolotl_nb_config.yml').exists()
    s = json.loads((out / 'training_summary.json').read_text())
    assert s['steps'] == 6 and s['metrics']['rewards/accuracies'] > 0.5 and s['metrics']['rewards/margins'] > 0, s
    r = cli('evaluate', cfg)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'eval_rewards/accuracies' in r.stdout and 'adapter' in r.stdout, r.stdout
    r = cli('merge-lora', cfg)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / 'merged' / 'config.json').exists()


@pytest.mark.parametrize('rl', ['orpo', 'kto'])
def test_switch_method_one_key(work, rl):
    "Switching `rl:` (plus the KTO dataset type) is all it takes; the method's own metrics are logged."
    ds = (
        [dict(path=str(work / 'kto.jsonl'), type='kto')]
        if rl == 'kto'
        else [dict(path=str(work / 'pref.jsonl'), type='prompt_pairs')]
    )
    cfg = write_cfg(work, rl, rl=rl, datasets=ds)
    r = cli('train', cfg)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((work / f'out-{rl}' / 'training_summary.json').read_text())['metrics']
    assert m['rewards/accuracies'] > 0.5, m
    assert ('kl' if rl == 'kto' else 'log_odds_ratio') in m, m


def grpo_cfg(work: Path, name: str, **trl) -> Path:
    "A 4-prompt-batch GRPO config on the toy prompts, with `trl` settings added."
    return write_cfg(work, name, rl='grpo', datasets=[dict(path=str(work / 'prompts.jsonl'))], micro_batch_size=4,
                     val_set_size=0.0, trl=dict(num_generations=4, **trl))


def test_grpo_vllm_unreachable(work):
    "trl.use_vllm with no server listening: a one-line error naming the address and the fix, no traceback."
    port = free_port()
    cfg = grpo_cfg(work, 'grpo', reward_funcs=['exact_answer'], use_vllm=True, vllm_server_host='127.0.0.1',
                   vllm_server_port=port)
    r = cli('train', cfg)
    assert r.returncode != 0
    assert f'no vLLM server answers at 127.0.0.1:{port}' in r.stderr and 'Traceback' not in r.stderr, r.stderr[-3000:]


def test_grpo_bad_reward_path(work):
    "A reward function that cannot be imported is named in the error."
    cfg = grpo_cfg(work, 'grpo_bad', reward_funcs=['no_such_rewards_mod.score'])
    r = cli('train', cfg)
    assert r.returncode != 0
    assert 'cannot import module `no_such_rewards_mod`' in r.stderr and 'Traceback' not in r.stderr, r.stderr[-3000:]


METHOD_DATA = {'dpo': dict(type='prompt_pairs', path='pref.jsonl'), 'kto': dict(type='kto', path='kto.jsonl'),
               'grpo': dict(path='prompts.jsonl')}


@pytest.mark.parametrize('rl', list(METHOD_DATA))
def test_method_uses_the_configured_schedule(work, rl):
    "`cosine_min_lr_ratio` (axolotl_nb.optim) reaches DPO, KTO and GRPO: the logged lr never drops below the floor."
    d = METHOD_DATA[rl] | {'path': str(work / METHOD_DATA[rl]['path'])}
    grpo_kw = dict(trl=dict(num_generations=4, max_completion_length=4, reward_funcs=['exact_answer']))
    extra = grpo_kw if rl == 'grpo' else {}
    cfg = load_config(write_cfg(work, f'floor-{rl}', rl=rl, datasets=[d], max_steps=4, val_set_size=0.0,
                                lr_scheduler='cosine', cosine_min_lr_ratio=0.5, save_strategy='steps', save_steps=4,
                                **extra))
    train(cfg, grpo.GRPO if rl == 'grpo' else preference.method(cfg))
    hist = json.loads((work / f'out-floor-{rl}' / 'checkpoint-4' / 'trainer_state.json').read_text())['log_history']
    lrs = [h['learning_rate'] for h in hist if 'learning_rate' in h]
    assert len(lrs) == 4 and min(lrs) >= 0.5 * 5e-3 - 1e-12 and min(lrs) < 5e-3, lrs  # HF's cosine would reach ~0
