"""Multipack checks that do not fit the notebook: GPU parity (sdpa / flex / flash varlen) and a Trainer-free DataLoader run.

CPU tests run in CI; `cuda` tests run on a GPU machine: `pytest -m cuda tests/test_multipack.py`.
"""
import importlib.util

import numpy as np
import pytest
import torch

from axolotl_nb.multipack import (MultipackBatchSampler, PackedCollator, causal_lm_loss_sum, model_mask_kwargs,
                                  pack, packed_dataloader)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')


def _docs(n=10, seed=0, vocab=101):
    g = np.random.default_rng(seed)
    out = []
    for L in g.integers(4, 40, n):
        x = g.integers(1, vocab, L).tolist(); p = int(g.integers(0, L // 2))
        out.append(dict(input_ids=x, labels=[-100] * p + x[p:]))
    return out


def _model(arch, attn, device, dtype=torch.float32):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config
    heads = 2 if attn == 'flex_attention' else 4  # Inductor's flex kernels need head_dim >= 32-ish: 128/2 = 64
    kw = dict(hidden_size=64 * (1 + (attn == 'flex_attention')), intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=heads, num_key_value_heads=heads // 2 if heads > 2 else 1, vocab_size=101, pad_token_id=0)
    c = LlamaConfig(**kw) if arch == 'llama' else Qwen2Config(use_sliding_window=True, sliding_window=7, max_window_layers=1, **kw)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(c, attn_implementation=attn, dtype=dtype).to(device).eval()


def _parity(arch, attn, device, dtype=torch.float32):
    "Packed loss/grads vs one-by-one (token-weighted) on `device`: returns (loss diff, max grad diff)."
    docs = _docs()
    bins = pack([len(d['input_ids']) for d in docs], 96)
    m = _model(arch, attn, device, dtype)
    coll = PackedCollator(attn, device=device, **model_mask_kwargs(m.config))
    def to(x):  # like Trainer._prepare_input: tensors, dicts of masks, BlockMasks
        if isinstance(x, dict): return {k: to(v) for k, v in x.items()}
        return x.to(device) if hasattr(x, 'to') else x
    batch = to(coll([[docs[i] for i in b] for b in bins]))
    m.zero_grad(); l, n = causal_lm_loss_sum(m, batch); (l / n).backward()
    gp = torch.cat([p.grad.flatten().float() for p in m.parameters() if p.grad is not None]); lp = (l / n).item()
    m.zero_grad(); tot = 0.
    for d in docs:
        li, _ = causal_lm_loss_sum(m, to(coll([[d]]))); (li / n).backward(); tot += li.item()
    gs = torch.cat([p.grad.flatten().float() for p in m.parameters() if p.grad is not None])
    return abs(lp - tot / n), float((gp - gs).abs().max())


def test_dataloader_epochs_cover_data():
    docs = _docs(50, seed=1)
    smp = MultipackBatchSampler([len(d['input_ids']) for d in docs], 64, micro_batch_size=2, drop_last=False)
    for ep in range(3):
        smp.set_epoch(ep)
        toks = sorted(t for b in packed_dataloader(docs, smp, PackedCollator(max_len=64))
                      for t in b['input_ids'][b['input_ids'] != 0].tolist())
        assert toks == sorted(t for d in docs for t in d['input_ids'])


@pytest.mark.parametrize('arch', ['llama', 'qwen2'])
def test_cpu_parity_sdpa(arch):
    dl, dg = _parity(arch, 'sdpa', 'cpu')
    assert dl < 1e-5 and dg < 1e-5, (dl, dg)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize('arch', ['llama', 'qwen2'])
@pytest.mark.parametrize('attn', ['sdpa', 'eager', 'packed_sdpa'])
def test_gpu_parity_fp32(arch, attn):
    torch.backends.cuda.matmul.allow_tf32 = False; torch.backends.cudnn.allow_tf32 = False
    dl, dg = _parity(arch, attn, 'cuda')
    assert dl < 1e-5 and dg < 1e-5, (dl, dg)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize('arch', ['llama', 'qwen2'])
def test_gpu_parity_flex_bf16(arch):
    "flex_attention with our document BlockMask (bf16, head_dim 64: Inductor cannot lower flex at tiny head dims)."
    dl, dg = _parity(arch, 'flex_attention', 'cuda', torch.bfloat16)
    assert dl < 1e-3, dl


@pytest.mark.parametrize('arch', ['llama', 'qwen2'])
def test_cpu_parity_packed_sdpa(arch):
    dl, dg = _parity(arch, 'packed_sdpa', 'cpu')
    assert dl < 1e-5 and dg < 1e-5, (dl, dg)


@pytest.mark.cuda
@cuda
@pytest.mark.skipif(importlib.util.find_spec('flash_attn') is None, reason='flash-attn not installed')
def test_gpu_flash_varlen_bf16():
    dl, dg = _parity('llama', 'flash_attention_2', 'cuda', torch.bfloat16)
    assert dl < 2e-2, dl


@pytest.mark.slow
@pytest.mark.skipif(not __import__('os').environ.get('AXOLOTL_NB_SLOW'), reason='slow end-to-end (set AXOLOTL_NB_SLOW=1): loads SmolLM2')
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
