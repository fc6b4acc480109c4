"""DeepSpeed ZeRO 1/2/3 for real, on 2 CPU ranks (gloo): `axolotl-nb train cfg.yml --launcher torchrun --
--nproc_per_node 2` through the HF Trainer's DeepSpeed integration, on a tiny random Llama.

- every shipped preset trains with the same losses as the 1-process run on the same global batch (2 ranks x micro
  batch 1 vs 1 process x micro batch 2; fp32, every example the same length, so the only difference is the order of
  floating-point reductions: relative 1e-5);
- ZeRO-3 + LoRA: the checkpoint's adapter merges (`merge-lora --lora_model_dir out/checkpoint-N`) and the merged
  model's logits equal base + adapter;
- kill -9 of the whole job after a checkpoint (ZeRO-2, 120 steps), then `auto_resume_from_checkpoints` reaches the
  uninterrupted losses; every rank SIGKILLed in step 4 (ZeRO-2 and ZeRO-3, 6 steps), the same command again resumes
  from checkpoint-2 with the uninterrupted losses (both slow: AXOLOTL_NB_SLOW=1);
- ZeRO-3 with a 4-bit / 8-bit base and misspelt DeepSpeed keys fail before any process is launched.

The CPU-offload presets need DeepSpeed's CPU Adam op, which DeepSpeed compiles the first time (minutes): they run
with AXOLOTL_NB_SLOW=1.
"""
import json, math, os, random, signal, subprocess, sys, time
from pathlib import Path

import pytest
import yaml

from axolotl_nb.launch import deepspeed_available, deepspeed_presets
from toys import CLI, KILLABLE, free_port, logged_losses, run_yaml, tiny_work

pytestmark = [pytest.mark.distributed,
              pytest.mark.skipif(not deepspeed_available(), reason="DeepSpeed is not installed (extra `deepspeed`)")]
RTOL = 1e-5
STEPS, SAVE = 8, 4
KILL_STEPS, KILL_SAVE = 120, 40  # a step takes ~0.1 s: leave seconds between the first checkpoint and the end
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'TOKENIZERS_PARALLELISM': 'false'}
SLOW = pytest.mark.skipif(not os.environ.get('AXOLOTL_NB_SLOW'),
                          reason='compiles DeepSpeed CPU Adam (set AXOLOTL_NB_SLOW=1)')
OFFLOAD = [p for p in deepspeed_presets() if 'offload' in p]


def kill_tree(pid:int) -> None:
    "SIGKILL a process and all its descendants (torchrun starts its workers in sessions of their own)."
    import psutil
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for q in procs:
        try: q.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess: pass


def torchrun_args() -> list[str]:
    port = str(29200 + random.randint(0, 700))
    return ['--launcher', 'torchrun', '--', '--nproc_per_node', '2', '--master_port', port]


@pytest.fixture(scope='module')
def d(tmp_path_factory) -> Path:
    "A tiny Llama and 64 alpaca rows that all tokenize to the same length (same words after a fixed first one)."
    words, rng = "cat sat on a mat and dog ran to big red sun".split(), random.Random(0)
    rows = [dict(instruction='Repeat the words', input='', output='the ' + ' '.join(rng.sample(words, len(words))))
            for _ in range(64)]
    return tiny_work(tmp_path_factory.mktemp('ds'), {'train.jsonl': rows}, hidden_size=64, num_layers=2)


def config(d:Path, name:str, **kw) -> Path:
    "The 1-process / 2-rank run: fp32, constant lr, STEPS steps, a checkpoint every SAVE (`kw` wins)."
    return run_yaml(d, name, **dict(sample_packing=False, lr_scheduler='constant', warmup_steps=0, max_steps=STEPS,
                                    save_steps=SAVE, bf16=False, fp16=False) | kw)


def train(d:Path, name:str, procs:int=2, **kw) -> subprocess.CompletedProcess:
    "Run `axolotl-nb train` (under torchrun for procs=2) and fail with its output if it fails."
    cmd = [CLI, 'train', str(config(d, name, **kw))] + (torchrun_args() if procs > 1 else [])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=ENV)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-5000:]
    return r


def losses(out:Path) -> dict[int, float]:
    "Every logged training loss, from the last checkpoint's trainer state."
    ck = max(out.glob('checkpoint-*'), key=lambda p: int(p.name.split('-')[1]))
    hist = json.loads((ck/'trainer_state.json').read_text())['log_history']
    return {h['step']: h['loss'] for h in hist if 'loss' in h}


def same(a:dict, b:dict) -> bool:
    steps = list(range(1, STEPS + 1))
    return sorted(a) == sorted(b) == steps and all(math.isclose(a[s], b[s], rel_tol=RTOL) for s in a)


@pytest.fixture(scope='module')
def ref(d) -> dict[int, float]:
    "The 1-process run on the same global batch (micro batch 2), no DeepSpeed."
    train(d, 'ref', procs=1, micro_batch_size=2)
    return losses(d/'ref')


def ran_zero(out:Path, step:int) -> list[str]:
    "The DeepSpeed checkpoint files of both ranks (ZeRO shards exist only if DeepSpeed really partitioned)."
    return sorted(p.name for p in (out/f'checkpoint-{step}'/f'global_step{step}').glob('*zero_pp_rank_[01]_*'))


@pytest.mark.parametrize('preset', [p for p in deepspeed_presets() if p not in OFFLOAD]
                         + [pytest.param(p, marks=SLOW) for p in OFFLOAD])
def test_preset_matches_single_process(d, ref, preset):
    train(d, preset, deepspeed=preset)
    got = losses(d/preset)
    assert same(ref, got), (preset, ref, got)
    shards = ran_zero(d/preset, STEPS)
    assert any('rank_0' in s for s in shards) and any('rank_1' in s for s in shards), shards


def test_zero3_lora_checkpoint_merges(d):
    "ZeRO-3 + LoRA: the adapter saved in checkpoint-4 is whole (gathered), merges, and merged = base + adapter."
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    lora = dict(adapter='lora', lora_r=8, lora_alpha=16, lora_target_linear=True, learning_rate=1e-2)
    train(d, 'z3lora', deepspeed='zero3', **lora)
    ck = d/'z3lora'/f'checkpoint-{SAVE}'
    sd = load_file(ck/'adapter_model.safetensors')
    assert sd and all(t.numel() > 0 for t in sd.values()), 'ZeRO-3 saved empty (partitioned) adapter tensors'
    assert any(k.endswith('lora_B.weight') and t.abs().max() > 0 for k, t in sd.items()), 'adapter did not train'
    m = subprocess.run([CLI, 'merge-lora', str(d/'z3lora.yml'), '--lora_model_dir', str(ck)], capture_output=True,
                       text=True, timeout=600, env=ENV)
    assert m.returncode == 0, m.stderr[-3000:]
    merged = AutoModelForCausalLM.from_pretrained(d/'z3lora'/'merged')
    ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(d/'tiny'), ck).eval()
    x = torch.randint(0, merged.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    base_model = AutoModelForCausalLM.from_pretrained(d/'tiny')
    with torch.no_grad(): a, b, base = ref(x).logits, merged(x).logits, base_model(x).logits
    torch.testing.assert_close(b, a, atol=1e-4, rtol=0)
    assert (b - base).abs().max() > 1e-3, 'the merged model equals the base: the adapter was lost'


@pytest.mark.skipif(not os.environ.get('AXOLOTL_NB_SLOW'),
                    reason='slow (two 120-step 2-rank runs, ~3-9 min): set AXOLOTL_NB_SLOW=1')
def test_kill_then_auto_resume_reaches_same_losses(d):
    "ZeRO-2: kill -9 the whole torchrun job after a checkpoint, rerun with auto_resume: the uninterrupted losses."
    kw = dict(deepspeed='zero2', max_steps=KILL_STEPS, save_steps=KILL_SAVE, auto_resume_from_checkpoints=True)
    train(d, 'whole', **kw)
    cfg = config(d, 'killed', **kw)
    p = subprocess.Popen([CLI, 'train', str(cfg), *torchrun_args()], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True)
    state = d/'killed'/f'checkpoint-{KILL_SAVE}'/'trainer_state.json'
    t0 = time.time()
    while not state.exists() and p.poll() is None and time.time() - t0 < 600: time.sleep(0.02)
    kill_tree(p.pid)
    err = p.communicate()[1]
    assert state.exists(), err[-4000:]
    assert not (d/'killed'/f'checkpoint-{KILL_STEPS}').exists(), 'the job finished before it was killed'
    r = subprocess.run([CLI, 'train', str(cfg), *torchrun_args()], capture_output=True, text=True, timeout=900,
                       env=ENV)
    assert r.returncode == 0, r.stderr[-4000:]
    assert 'resuming from' in r.stdout + r.stderr, 'no "resuming from" message'
    a, b = losses(d/'whole'), losses(d/'killed')
    assert sorted(a) == sorted(b) == list(range(1, KILL_STEPS + 1)), (sorted(a)[-3:], sorted(b)[-3:])
    assert all(math.isclose(a[s], b[s], rel_tol=RTOL) for s in a), [(s, a[s], b[s]) for s in a if a[s] != b[s]][:5]


@pytest.mark.slow  # ~150-180 s per preset on the shared 2-core machine (3 two-rank DeepSpeed jobs)
@pytest.mark.parametrize('preset', ['zero2', 'zero3'])
def test_sigkill_in_a_step_then_auto_resume_same_losses(d, preset):
    "Every rank SIGKILLed in step 4 (checkpoint-2 on disk); the same command again auto-resumes: uninterrupted losses."
    (d/'killable.py').write_text(KILLABLE)
    kw = dict(deepspeed=preset, max_steps=6, save_steps=2, auto_resume_from_checkpoints=True)

    def job(name:str, kill_at:int=0) -> subprocess.CompletedProcess:
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port',
               str(free_port()), str(d/'killable.py'), str(config(d, name, **kw))]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**ENV, 'KILL_AT': str(kill_at)})

    r = job(f'{preset}-whole')
    assert r.returncode == 0, r.stderr[-4000:]
    out = d/f'{preset}-killed'
    r = job(out.name, kill_at=4)
    assert r.returncode != 0 and (out/'checkpoint-2').is_dir() and not (out/'checkpoint-4').exists(), r.stderr[-4000:]
    r = job(out.name)
    assert r.returncode == 0 and f'resuming from {out/"checkpoint-2"}' in r.stdout + r.stderr, r.stderr[-4000:]
    a, b = logged_losses(d/f'{preset}-whole', 6), logged_losses(out, 6)
    assert sorted(b) == list(range(1, 7)) and all(math.isclose(a[s], b[s], rel_tol=RTOL) for s in a), (a, b)


def test_zero3_quantized_base_rejected_before_launch(d):
    "ZeRO-3 cannot partition bitsandbytes weights: refused in the parent, with the reason, before torchrun starts."
    from axolotl_nb.config import UserError
    from axolotl_nb.launch import deepspeed_config
    from axolotl_nb.load import load_config
    cfg = config(d, 'q4', deepspeed='zero3', adapter='qlora', lora_target_linear=True, load_in_4bit=True)
    r = subprocess.run([CLI, 'train', str(cfg), *torchrun_args()], capture_output=True, text=True, timeout=120,
                       env=ENV)
    assert r.returncode != 0 and 'cannot partition' in r.stderr and 'load_in_4bit' in r.stderr, r.stderr[-3000:]
    assert 'launching' not in r.stderr and 'Traceback' not in r.stderr
    raw = yaml.safe_load(cfg.read_text())
    q8 = load_config({**raw, 'adapter': 'lora', 'load_in_4bit': False, 'load_in_8bit': True})
    with pytest.raises(UserError, match='load_in_8bit.*cannot partition'): deepspeed_config(q8)
    deepspeed_config(q8.model_copy(update=dict(deepspeed='zero2')))  # ZeRO-2 keeps the quantized base whole: allowed


def test_deepspeed_given_as_name_path_or_mapping_is_checked(d):
    "`deepspeed:` as a preset name, a file path or an inline mapping; an unknown key is named before launch."
    from axolotl_nb.load import load_config
    from axolotl_nb.launch import deepspeed_config, shipped_deepspeed_dir
    base = yaml.safe_load(config(d, 'forms').read_text())
    zero2 = shipped_deepspeed_dir()/'zero2.json'
    assert deepspeed_config(load_config({**base, 'deepspeed': 'zero2'})) == zero2
    assert deepspeed_config(load_config({**base, 'deepspeed': str(zero2)})) == zero2
    bad = d/'typo.json'
    bad.write_text(json.dumps({'zero_optimization': {'stage': 2, 'overlap_com': True}}))
    cmd = [CLI, 'train', str(config(d, 'typo', deepspeed=str(bad))), *torchrun_args()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=ENV)
    assert r.returncode != 0 and 'did you mean `zero_optimization.overlap_comm`' in r.stderr, r.stderr[-3000:]
    assert 'launching' not in r.stderr
    inline = {'zero_optimization': {'stage': 2}, 'train_micro_batch_size_per_gpu': 'auto'}
    assert deepspeed_config(load_config({**base, 'deepspeed': inline})) == inline
