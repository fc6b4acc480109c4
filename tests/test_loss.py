"Chunked loss checks that need more than one process or a GPU (the exactness proofs live in nbs/09_loss.ipynb)."
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from transformers import AutoModelForCausalLM, LlamaConfig

from axolotl_nb.loss import causal_lm_loss, chunked_cross_entropy, loss_impl, _kernel_ce, LossOpts
from toys import free_port

def tiny_llama():
    torch.manual_seed(0)
    c = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2)
    return AutoModelForCausalLM.from_config(c, attn_implementation='eager').float()

def batches():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 300, (2, 2, 16), generator=g)
    labels = ids.clone()
    labels[0, :, :5] = -100
    return ids, labels

def _ddp_worker(rank:int, port:int, out:dict):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=2)
    ids, labels = batches()
    model = torch.nn.parallel.DistributedDataParallel(tiny_llama())
    loss = causal_lm_loss(model, dict(input_ids=ids[rank], labels=labels[rank]))
    loss.backward()
    out[rank] = {n: p.grad.clone() for n, p in model.module.named_parameters()}
    dist.destroy_process_group()

def test_ddp_forward_goes_through_the_wrapper():
    "Under DDP the chunked loss runs inside DDP's forward, so gradients are all-reduced: the mean of both ranks'."
    ids, labels = batches()
    ref_model = tiny_llama()
    losses = [causal_lm_loss(ref_model, dict(input_ids=ids[r], labels=labels[r])) for r in range(2)]
    ((losses[0] + losses[1]) / 2).backward()
    out = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(free_port(), out), nprocs=2, join=True)
    for n, p in ref_model.named_parameters():
        torch.testing.assert_close(out[0][n], p.grad, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out[1][n], p.grad, rtol=1e-5, atol=1e-6)

def _gpu_case(dtype=torch.bfloat16):
    torch.manual_seed(0)
    h = torch.randn(2, 1025, 1024, device='cuda', dtype=dtype, requires_grad=True)
    w = (torch.randn(32_000, 1024, device='cuda', dtype=dtype) * 0.02).requires_grad_()
    y = torch.randint(0, 32_000, (2, 1025), device='cuda')
    y[0, :100] = -100
    return h, w, y

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
@pytest.mark.parametrize('impl,pkg', [('liger', 'liger_kernel'), ('cce', 'cut_cross_entropy')])
def test_kernel_loss_matches_chunked(impl, pkg):
    "Liger's / CCE's fused kernels give our chunked loss (bf16 tolerance), with our token count and soft-cap."
    pytest.importorskip(pkg)
    h, w, y = _gpu_case()
    for softcap in (None, 30.0):
        ours = chunked_cross_entropy(h, w, y, softcap=softcap)
        theirs = _kernel_ce(impl, h, w, y, None, None, LossOpts(softcap=softcap))
        torch.testing.assert_close(theirs.float(), ours, rtol=2e-2, atol=2e-2)
        g1, g2 = torch.autograd.grad(ours, (h, w)), torch.autograd.grad(theirs, (h, w))
        for a, b in zip(g1, g2): torch.testing.assert_close(a.float(), b.float(), rtol=5e-2, atol=5e-3)
    cfg = type('C', (), {'cut_cross_entropy': impl == 'cce', 'liger_fused_linear_cross_entropy': impl == 'liger'})()
    assert loss_impl(cfg) == impl

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_gpu_memory_is_chunk_sized():
    "At 128k vocab and 8k bf16 tokens the full-logits loss needs GiBs; ours stays within a few chunk blocks."
    h = torch.randn(1, 8193, 2048, device='cuda', dtype=torch.bfloat16, requires_grad=True)
    w = torch.randn(128_256, 2048, device='cuda', dtype=torch.bfloat16) * 0.02
    y = torch.randint(0, 128_256, (1, 8193), device='cuda')
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    chunked_cross_entropy(h, w, y).backward()
    extra = torch.cuda.max_memory_allocated() - base
    assert extra < 4 * 2**25 * 4 + 3 * h.numel() * 2, extra / 2**20  # ≤ 4 fp32 chunk blocks + the hidden grads
