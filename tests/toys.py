"""Toy fixtures for fast tests and notebooks: a ~40-token word-level tokenizer, separable preferences, a chat config,
a short tiny-model run config, a free port, this venv's `axolotl-nb` executable."""
import json
import random
import shutil
import socket
import sys
from pathlib import Path

import yaml

from axolotl_nb.models import save_tiny_model

TOY_WORDS = ('please help me with my task can you do it now question answer thank you kindly certainly happy to '
             'of course go away no stop asking never bother leave').split()

TOY_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'user' %}question {{ m['content'] }} "
                "{% else %}answer {{ m['content'] }} <eos> {% endif %}{% endfor %}"
                "{% if add_generation_prompt %}answer {% endif %}")

POLITE = ['thank you kindly', 'certainly happy to help', 'of course happy to help', 'certainly thank you']
RUDE = ['go away', 'no stop asking', 'never bother me', 'leave now']
ASKS = ['please help me', 'can you help me with my task', 'help me now', 'question can you do it',
        'please do my task now']


def toy_tokenizer():
    "A ~40-token word-level tokenizer (pad, eos, unk + `TOY_WORDS`) with a tiny chat template."
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {w: i for i, w in enumerate(dict.fromkeys(['<pad>', '<eos>', '<unk>', *TOY_WORDS]))}
    t = Tokenizer(models.WordLevel(vocab, unk_token='<unk>'))
    t.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=t, pad_token='<pad>', eos_token='<eos>', unk_token='<unk>')
    tok.chat_template = TOY_TEMPLATE
    return tok


def toy_preferences(n: int = 32, seed: int = 0, kto: bool = False) -> list[dict]:
    "Separable toy preferences: a request, a polite (chosen) and a rude (rejected) reply; or KTO rows (`kto=True`)."
    r = random.Random(seed)
    rows = [dict(prompt=r.choice(ASKS), chosen=r.choice(POLITE), rejected=r.choice(RUDE)) for _ in range(n)]
    if not kto: return rows
    return [dict(prompt=d['prompt'], completion=d['chosen'] if i % 2 == 0 else d['rejected'], label=i % 2 == 0)
            for i, d in enumerate(rows)]


def chat_config(tmp_path: Path, endless: bool = False, **model_kw) -> Path:
    "A tiny model and a chat config for it (`endless`: the model never emits end-of-sequence)."
    d = save_tiny_model(tmp_path/'tiny', **model_kw)
    if endless:
        gc = json.loads((d/'generation_config.json').read_text())
        (d/'generation_config.json').write_text(json.dumps(gc | {'eos_token_id': None}))
    (tmp_path/'d.jsonl').write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    cfg = dict(base_model=str(d), datasets=[dict(path=str(tmp_path/'d.jsonl'), type='chat_template')],
               micro_batch_size=1, output_dir=str(tmp_path/'out'))
    (tmp_path/'c.yml').write_text(yaml.safe_dump(cfg))
    return tmp_path/'c.yml'


LORA = dict(adapter='lora', lora_r=8, lora_alpha=16, lora_target_linear=True)  # a small LoRA on every linear layer
REPEAT_WORDS = "the cat sat on a mat and dog ran to big red sun sky blue tree green".split()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    "Write `rows` as JSON lines to `path`."
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    return path


def method_data(d: Path, rewards_module: str, n_prompts: int = 24) -> Path:
    "In `d`: a tiny model and toy rows for every method (sft, pref, kto, prompts .jsonl) + a word-count reward module."
    save_tiny_model(d / 'tiny', hidden_size=32, num_layers=1, tokenizer=toy_tokenizer())
    rows = toy_preferences(24)
    write_jsonl(d / 'sft.jsonl', [{'instruction': r['prompt'], 'input': '', 'output': r['chosen']} for r in rows])
    write_jsonl(d / 'pref.jsonl', rows)
    write_jsonl(d / 'kto.jsonl', toy_preferences(24, kto=True))
    write_jsonl(d / 'prompts.jsonl', [{'prompt': r['prompt'], 'answer': 'thank'} for r in rows[:n_prompts]])
    (d / f'{rewards_module}.py').write_text("def words(prompts, completions, **kw):\n"
                                            "    return [float(len(c.split())) for c in completions]\n")
    return d


def run_yaml(d: Path, name: str, **kw) -> Path:
    "`d/<name>.yml`: 4 steps of the tiny model `d/tiny` on the alpaca file `d/train.jsonl` into `d/<name>` (`kw` wins)."
    cfg = dict(base_model=str(d/'tiny'), datasets=[dict(path=str(d/'train.jsonl'), type='alpaca')],
               dataset_prepared_path=str(d/'prepared'), output_dir=str(d/name), sequence_len=256, micro_batch_size=1,
               gradient_accumulation_steps=1, learning_rate=1e-3, max_steps=4, save_steps=2, logging_steps=1, seed=7,
               use_tensorboard=False) | kw
    (d/f'{name}.yml').write_text(yaml.safe_dump(cfg))
    return d/f'{name}.yml'


CLI = shutil.which('axolotl-nb', path=str(Path(sys.executable).parent)) or shutil.which('axolotl-nb')  # this venv's


def free_port() -> int:
    "A TCP port on 127.0.0.1 that nothing listens on right now."
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


KILLABLE = r'''
"`axolotl-nb train CFG` under torchrun; with KILL_AT=n every rank SIGKILLs itself as its n-th micro-step begins."
import os, signal, sys
import transformers
from axolotl_nb.cli import main
kill_at, seen = int(os.environ.get('KILL_AT', 0)), [0]
orig = transformers.Trainer.training_step
def step(self, *a, **kw):
    seen[0] += 1
    if seen[0] == kill_at: os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no final save: a crashed job
    return orig(self, *a, **kw)
transformers.Trainer.training_step = step
sys.exit(main(['train', sys.argv[1]]))
'''


def logged_losses(out: Path, step: int) -> dict[int, float]:
    "The losses logged up to `step`, from `out/checkpoint-<step>/trainer_state.json`."
    hist = json.loads((out / f'checkpoint-{step}' / 'trainer_state.json').read_text())['log_history']
    return {h['step']: h['loss'] for h in hist if 'loss' in h}
