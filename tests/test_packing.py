"""Packing checks that do not fit the notebooks: GPU parity (sdpa / flex / flash varlen), MoE parity, unsupervised
batches, one plan per epoch, and a Trainer-free DataLoader run.

CPU tests run in CI; `cuda` tests run on a GPU machine: `pytest -m cuda tests/test_packing.py`.
"""
import importlib.util

import numpy as np
import pytest
import torch

from axolotl_nb.attention import PackedCollator, causal_lm_loss_sum, eval_loss, model_mask_kwargs, packed_dataloader
from axolotl_nb.packing import MultipackBatchSampler, pack, pack_plan


def gpu(test):
    "A `cuda` test (`pytest -m cuda`), skipped where there is no GPU."
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')(test))


def _docs(n=10, seed=0, vocab=101):
    g = np.random.default_rng(seed)
    out = []
    for L in g.integers(4, 40, n):
        x = g.integers(1, vocab, L).tolist()
        p = int(g.integers(0, L // 2))
        out.append(dict(input_ids=x, labels=[-100] * p + x[p:]))
    return out


def _config(arch, attn):
    from transformers import LlamaConfig, MixtralConfig, Qwen2Config, Qwen3MoeConfig
    heads = 2 if attn == 'flex_attention' else 4  # Inductor's flex kernels need head_dim >= 32-ish: 128/2 = 64
    kw = dict(hidden_size=64 * (1 + (attn == 'flex_attention')), intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=heads, num_key_value_heads=heads // 2 if heads > 2 else 1, vocab_size=101,
              pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if arch == 'mixtral': return MixtralConfig(num_local_experts=4, num_experts_per_tok=2, **kw)
    if arch == 'qwen3_moe': return Qwen3MoeConfig(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, **kw)
    if arch == 'qwen2': return Qwen2Config(use_sliding_window=True, sliding_window=7, max_window_layers=1, **kw)
    return LlamaConfig(**kw)


def _model(arch, attn, device, dtype=torch.float32):
    from transformers import AutoModelForCausalLM
    c = _config(arch, attn)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(c, attn_implementation=attn, dtype=dtype).to(device).eval()


def _parity(arch, attn, device, dtype=torch.float32, tol=1e-5, grads=True):
    "Packed loss (and, with `grads`, every gradient) within `tol` of one document at a time (token-weighted)."
    docs = _docs()
    bins = pack([len(d['input_ids']) for d in docs], 96)
    m = _model(arch, attn, device, dtype)
    coll = PackedCollator(attn, device=device, **model_mask_kwargs(m.config))
    def to(x):  # like Trainer._prepare_input: tensors, dicts of masks, BlockMasks
        if isinstance(x, dict): return {k: to(v) for k, v in x.items()}
        return x.to(device) if hasattr(x, 'to') else x
    batch = to(coll([[docs[i] for i in b] for b in bins]))
    m.zero_grad()
    loss, n = causal_lm_loss_sum(m, batch)
    (loss / n).backward()
    gp = torch.cat([p.grad.flatten().float() for p in m.parameters() if p.grad is not None])
    lp = (loss / n).item()
    m.zero_grad()
    tot = 0.
    for d in docs:
        li, _ = causal_lm_loss_sum(m, to(coll([[d]])))
        (li / n).backward()
        tot += li.item()
    gs = torch.cat([p.grad.flatten().float() for p in m.parameters() if p.grad is not None])
    dl, dg = abs(lp - tot / n), float((gp - gs).abs().max())
    assert dl < tol and (dg < tol or not grads), (dl, dg)


def _unsupervised() -> list[dict]:
    "Six documents without a supervised token (every label -100)."
    return [dict(input_ids=d['input_ids'], labels=[-100] * len(d['input_ids'])) for d in _docs(6)]


def _rows(docs: list[dict], packed: bool) -> list[list[dict]]:
    "Six documents as two packed rows of three, or one document per row."
    return [docs[:3], docs[3:]] if packed else [[d] for d in docs]


def _grads_finite(m) -> bool:
    return all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_dataloader_epochs_cover_data():
    docs = _docs(50, seed=1)
    smp = MultipackBatchSampler([len(d['input_ids']) for d in docs], 64, micro_batch_size=2, drop_last=False)
    for ep in range(3):
        smp.set_epoch(ep)
        toks = sorted(t for b in packed_dataloader(docs, smp, PackedCollator(max_len=64))
                      for t in b['input_ids'][b['input_ids'] != 0].tolist())
        assert toks == sorted(t for d in docs for t in d['input_ids'])


@pytest.mark.parametrize('world', [1, 3])
@pytest.mark.parametrize('group_size', [None, 37])
def test_every_example_once_per_epoch(world, group_size):
    "Across ranks and epochs (bounded groups included), the examples seen are the dataset, each exactly once."
    lens = np.random.default_rng(0).integers(5, 200, 300)
    for ep in range(3):
        seen = []
        for r in range(world):
            s = MultipackBatchSampler(lens, 256, 2, seed=1, num_replicas=world, rank=r, drop_last=False,
                                      group_size=group_size)
            s.set_epoch(ep)
            seen += [i for mb in s for b in mb for i in b]
        extra = len(seen) - len(lens)  # the last partial step may repeat a bin so every rank has one
        assert sorted(set(seen)) == list(range(len(lens))) and extra <= world * 256, (ep, extra)
        if world == 1: assert sorted(seen) == list(range(len(lens)))


def test_one_plan_per_epoch(monkeypatch):
    "The step count, the loader and the report read one packing per epoch: `pack` runs once per epoch."
    import axolotl_nb.packing as P
    calls = []
    real = P.pack
    monkeypatch.setattr(P, 'pack', lambda *a, **k: calls.append(1) or real(*a, **k))
    lens = np.random.default_rng(5).integers(5, 200, 211)  # lengths no other test uses: not cached yet
    steps = len(MultipackBatchSampler(lens, 256, 2, seed=3))  # the step count
    loader = MultipackBatchSampler(lens, 256, 2, seed=3)  # the loader's sampler
    report = pack_plan(lens, 256, seed=3)  # the preprocess report
    assert len(list(loader)) == steps and report.num_bins == loader.num_bins and len(calls) == 1
    loader.set_epoch(1)
    list(loader)
    assert len(calls) == 2


@pytest.mark.parametrize('packed', [True, False])
def test_unsupervised_batch_no_nan(packed):
    "A batch whose labels are all -100 gives a zero summed loss, finite zero grads and a finite eval loss."
    docs = _unsupervised()
    m = _model('llama', 'sdpa', 'cpu')
    coll = PackedCollator('sdpa')
    loss, n = causal_lm_loss_sum(m, coll(_rows(docs, packed)))
    (loss / max(n, 1)).backward()
    assert (loss.item(), n) == (0.0, 0)
    assert _grads_finite(m)
    lens = [len(d['input_ids']) for d in docs]
    dl = (packed_dataloader(docs, MultipackBatchSampler(lens, 96, 2, drop_last=False), coll) if packed
          else torch.utils.data.DataLoader(docs, batch_size=2, collate_fn=coll))
    assert eval_loss(m, dl) == 0.0


@pytest.mark.parametrize('arch', ['llama', 'qwen2', 'mixtral', 'qwen3_moe'])
@pytest.mark.parametrize('attn', ['sdpa', 'packed_sdpa'])
def test_cpu_parity(arch, attn):
    "Dense (Llama, Qwen2 with a sliding window) and MoE (Mixtral, Qwen3-MoE): fp32 packed == one by one."
    _parity(arch, attn, 'cpu')


@gpu
@pytest.mark.parametrize('arch', ['llama', 'qwen2'])
@pytest.mark.parametrize('attn', ['sdpa', 'eager', 'packed_sdpa'])
def test_gpu_parity_fp32(arch, attn):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    _parity(arch, attn, 'cuda')


@gpu
@pytest.mark.parametrize('arch', ['llama', 'qwen2'])
def test_gpu_parity_flex_bf16(arch):
    "flex_attention with our document BlockMask (bf16, head_dim 64: Inductor cannot lower flex at tiny head dims)."
    _parity(arch, 'flex_attention', 'cuda', torch.bfloat16, tol=1e-3, grads=False)


@gpu
@pytest.mark.skipif(importlib.util.find_spec('flash_attn') is None, reason='flash-attn not installed')
def test_gpu_flash_varlen_bf16():
    _parity('llama', 'flash_attention_2', 'cuda', torch.bfloat16, tol=2e-2, grads=False)


@pytest.mark.slow
@pytest.mark.skipif(not __import__('os').environ.get('AXOLOTL_NB_SLOW'),
                    reason='slow end-to-end (set AXOLOTL_NB_SLOW=1): loads SmolLM2')
def test_cli_evaluate_same_loss_packed_or_not(tmp_path):
    "`axolotl-nb evaluate` gives the same eval loss with eval_sample_packing on and off (token-weighted)."
    import subprocess, sys
    from pathlib import Path
    yml = Path(__file__).resolve().parents[1] / 'examples/quickstart.yml'
    losses = []
    for p in ('true', 'false'):
        r = subprocess.run([sys.executable, '-m', 'axolotl_nb.cli', 'evaluate', str(yml), '--eval_sample_packing', p,
                            '--output_dir', str(tmp_path / 'out'), '--dataset_prepared_path', str(tmp_path / 'prep')],
                           capture_output=True, text=True, cwd=tmp_path, timeout=900)
        assert r.returncode == 0, r.stderr[-2000:]
        line = [l for l in r.stdout.splitlines() if 'eval_loss' in l][-1]
        losses.append(float(line.split("'eval_loss': ")[1].split(',')[0]))
    assert abs(losses[0] - losses[1]) < 1e-5, losses


def test_yaml_packed_sdpa_selectable(tmp_path):
    "`attn_implementation: packed_sdpa` in a config loads the model on it, flattens the batch, and matches sdpa's loss."
    from axolotl_nb.attention import collate_fn_for
    from axolotl_nb.models import load_model, load_tokenizer, save_tiny_model
    from axolotl_nb.load import load_config
    save_tiny_model(tmp_path / 'tiny')
    losses = {}
    for attn in ('packed_sdpa', 'sdpa'):
        cfg = load_config(dict(base_model=str(tmp_path / 'tiny'), datasets=[dict(path='x.jsonl', type='alpaca')],
                               sequence_len=128, sample_packing=True, micro_batch_size=2, attn_implementation=attn))
        tok = load_tokenizer(cfg)
        m = load_model(cfg, tok)
        assert m.config._attn_implementation == attn
        coll = collate_fn_for(cfg, tok, m.config)
        assert coll.flat == (attn == 'packed_sdpa')
        docs = _docs(8, vocab=min(101, m.config.vocab_size))
        loss, n = causal_lm_loss_sum(m, coll([docs[:4], docs[4:]]))
        losses[attn] = loss.item() / n
    assert abs(losses['packed_sdpa'] - losses['sdpa']) < 1e-5, losses


@pytest.mark.parametrize('packed', [True, False])
def test_unsupervised_batch_training_loss_finite(packed):
    "The training loss (09_loss's chunked loss, as the Trainer calls it) of an all -100 batch is 0, with 0 grads."
    from axolotl_nb.loss import causal_lm_loss
    m = _model('llama', 'sdpa', 'cpu').train()
    batch = PackedCollator('sdpa')(_rows(_unsupervised(), packed))
    for nib in (None, 0):  # no divisor, and the Trainer's count of supervised tokens across accumulation (0 here)
        m.zero_grad()
        loss = causal_lm_loss(m, batch, num_items_in_batch=nib)
        loss.backward()
        assert loss.item() == 0.0, (nib, loss)
        assert _grads_finite(m)


def test_run_packs_each_epoch_once(tmp_path, monkeypatch):
    "A real 2-epoch packed run (preprocess report, step count, loaders, eval) packs each epoch's lengths exactly once."
    import json
    import yaml
    import axolotl_nb.packing as P
    from axolotl_nb.models import save_tiny_model
    from axolotl_nb.load import load_config
    from axolotl_nb.run import train
    save_tiny_model(tmp_path / 'tiny')
    g = np.random.default_rng(0)
    for name, n in (('train', 40), ('eval', 8)):
        rows = [dict(instruction='Repeat: ' + ' '.join(g.choice(['a', 'cat', 'sat', 'on', 'mat'], g.integers(3, 30))),
                     input='', output='ok') for _ in range(n)]
        (tmp_path / f'{name}.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
    c = dict(base_model=str(tmp_path / 'tiny'), datasets=[dict(path=str(tmp_path / 'train.jsonl'), type='alpaca')],
             test_datasets=[dict(path=str(tmp_path / 'eval.jsonl'), type='alpaca')], sequence_len=128,
             sample_packing=True, eval_sample_packing=True, micro_batch_size=1, num_epochs=2, learning_rate=1e-3,
             dataset_prepared_path=str(tmp_path / 'prep'), output_dir=str(tmp_path / 'out'), use_tensorboard=False,
             evals_per_epoch=1, seed=3)
    (tmp_path / 'c.yml').write_text(yaml.safe_dump(c))
    calls = []
    real = P._shuffled_bins
    monkeypatch.setattr(P, '_shuffled_bins', lambda lens, *a: calls.append((len(lens), *a)) or real(lens, *a))
    P._PLANS.clear()
    train(load_config(str(tmp_path / 'c.yml')))
    train_calls = [k for k in calls if not k[4]]  # (n, capacity, seed, epoch, sequential, group_size)
    assert sorted(k[3] for k in train_calls) == [0, 1], calls  # epoch 0 and epoch 1, once each
    assert len([k for k in calls if k[4]]) == 1, calls  # the eval set: packed once for every evaluation
