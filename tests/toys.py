"""Toy fixtures for fast tests and notebooks: a ~40-token word-level tokenizer, separable preferences, a chat config,
tiny-model work folders and run configs, a free port, this venv's `axolotl-nb` executable (and a runner for it)."""
import json
import os
import random
import shutil
import socket
import subprocess
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


def write_yaml(path: Path, cfg: dict) -> Path:
    "Write the config `cfg` as YAML to `path`."
    path.write_text(yaml.safe_dump(cfg))
    return path


def chat_config(tmp_path: Path, endless: bool = False, extra: dict | None = None, **model_kw) -> Path:
    "A tiny model and a chat config for it (`endless`: the model never emits end-of-sequence; `extra`: more keys)."
    d = save_tiny_model(tmp_path/'tiny', **model_kw)
    if endless:
        gc = json.loads((d/'generation_config.json').read_text())
        (d/'generation_config.json').write_text(json.dumps(gc | {'eos_token_id': None}))
    (tmp_path/'d.jsonl').write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    cfg = dict(base_model=str(d), datasets=[dict(path=str(tmp_path/'d.jsonl'), type='chat_template')],
               micro_batch_size=1, output_dir=str(tmp_path/'out'))
    return write_yaml(tmp_path/'c.yml', cfg | (extra or {}))


LORA = dict(adapter='lora', lora_r=8, lora_alpha=16, lora_target_linear=True)  # a small LoRA on every linear layer
REPEAT_WORDS = "the cat sat on a mat and dog ran to big red sun sky blue tree green".split()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    "Write `rows` as JSON lines to `path`."
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    return path


def tiny_work(d: Path, files: dict[str, list[dict]] | None = None, **model_kw) -> Path:
    "`d` holding a tiny random model in `d/tiny` (`model_kw` for `save_tiny_model`) and each of `files` (name: rows)."
    save_tiny_model(d / 'tiny', **model_kw)
    for name, rows in (files or {}).items(): write_jsonl(d / name, rows)
    return d


def sft_rows(prefs: list[dict]) -> list[dict]:
    "Alpaca rows from preference rows: the prompt as the instruction, the chosen reply as the output."
    return [{'instruction': r['prompt'], 'input': '', 'output': r['chosen']} for r in prefs]


def method_data(d: Path, rewards_module: str, n_prompts: int = 24) -> Path:
    "In `d`: a tiny model and toy rows for every method (sft, pref, kto, prompts .jsonl) + a word-count reward module."
    rows = toy_preferences(24)
    tiny_work(d, {'sft.jsonl': sft_rows(rows), 'pref.jsonl': rows, 'kto.jsonl': toy_preferences(24, kto=True),
                  'prompts.jsonl': [{'prompt': r['prompt'], 'answer': 'thank'} for r in rows[:n_prompts]]},
              hidden_size=32, num_layers=1, tokenizer=toy_tokenizer())
    (d / f'{rewards_module}.py').write_text("def words(prompts, completions, **kw):\n"
                                            "    return [float(len(c.split())) for c in completions]\n")
    return d


METHOD_FILES = {'sft': ('sft.jsonl', 'alpaca'), 'dpo': ('pref.jsonl', 'prompt_pairs'), 'kto': ('kto.jsonl', 'kto'),
                'grpo': ('prompts.jsonl', None)}  # method: (`method_data` file, dataset type)


def method_cfg(d: Path, method: str, out: str, rewards_module: str, **kw) -> dict:
    """A tiny-LoRA run of `method` on `method_data(d, rewards_module)` into `d/out` (GRPO: 4 generations of 4 tokens,
    scored by the module's `words`); `kw` wins."""
    path, typ = METHOD_FILES[method]
    c = dict(base_model=str(d/'tiny'), datasets=[dict(path=str(d/path)) | ({'type': typ} if typ else {})],
             dataset_prepared_path=str(d/'prep'), output_dir=str(d/out), adapter='lora', lora_r=4, lora_alpha=8,
             lora_target_linear=True, sequence_len=64, micro_batch_size=4, logging_steps=1)
    if method != 'sft': c['rl'] = method
    if method == 'grpo':  # a reward with spread (so there is a gradient), from a module beside the config
        c |= dict(trust_remote_code=True, trl=dict(num_generations=4, max_completion_length=4,
                                                   reward_funcs=[f'{rewards_module}.words']))
    return c | kw


def prep_cfg(d: Path, datasets: list[dict], base_model: str = 'tiny', **kw) -> dict:
    """Raw config to preprocess `datasets` for `base_model`'s tokenizer: rows of up to 1024 tokens, micro-batch 1, the
    cache in `d/prepared`; `kw` wins."""
    return dict(base_model=base_model, datasets=datasets, sequence_len=1024, micro_batch_size=1,
                dataset_prepared_path=str(d/'prepared')) | kw


def cached(prepared: Path) -> list[Path]:
    "What the prepared-dataset folder holds besides lock files (nothing if it does not exist)."
    return [p for p in prepared.iterdir() if p.suffix != '.lock'] if prepared.exists() else []


def run_yaml(d: Path, name: str, **kw) -> Path:
    "`d/<name>.yml`: 4 steps of the tiny model `d/tiny` on the alpaca file `d/train.jsonl` into `d/<name>` (`kw` wins)."
    cfg = dict(base_model=str(d/'tiny'), datasets=[dict(path=str(d/'train.jsonl'), type='alpaca')],
               dataset_prepared_path=str(d/'prepared'), output_dir=str(d/name), sequence_len=256, micro_batch_size=1,
               gradient_accumulation_steps=1, learning_rate=1e-3, max_steps=4, save_steps=2, logging_steps=1, seed=7,
               use_tensorboard=False) | kw
    return write_yaml(d/f'{name}.yml', cfg)


CLI = shutil.which('axolotl-nb', path=str(Path(sys.executable).parent)) or shutil.which('axolotl-nb')  # this venv's


def cli(*args, cwd=None, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    "Run `CLI` with `args` (any type), offline and without tokenizer threads (`env` on top); its output as text."
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TOKENIZERS_PARALLELISM': 'false', **(env or {})}
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


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
