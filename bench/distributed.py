"""Per-rank memory of FSDP2 vs DDP: the same Llama (random init) trained for a few AdamW steps on 2 CPU processes \
(gloo).

Measures on every rank: bytes of the parameters it holds (local shards under FSDP2), of its gradients, and of its
AdamW state after the first step, plus peak RSS of the process and seconds per step. FSDP2 builds the model on the
meta device, shards it, then materialises only the local shards (the standard FSDP2 recipe), so its RSS never holds the
whole model; DDP holds a full replica per rank. Writes the `distributed` section of docs/benchmarks.md.
Usage: python bench/distributed.py [--hidden 512] [--layers 8] [--steps 3] [--no-write]
(internally: torchrun --nproc_per_node 2 bench/distributed.py --worker MODE ...)
"""

from __future__ import annotations
import json, os, resource, subprocess, sys, tempfile, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import flags, parser, publish, status_mib  # noqa: E402


def build(args, meta: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    c = LlamaConfig(
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 11 // 4,
        num_hidden_layers=args.layers,
        num_attention_heads=8,
        num_key_value_heads=8,
        vocab_size=args.vocab,
        max_position_embeddings=4096,
    )
    torch.manual_seed(0)
    if not meta:
        return LlamaForCausalLM(c)
    with torch.device('meta'):
        return LlamaForCausalLM(c)


def local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, 'to_local') else t


def rss_now() -> int:
    "Current resident set size of this process, bytes."
    return round(status_mib('VmRSS') * 2**20)


def nbytes(ts) -> int:
    return sum(local(t).numel() * local(t).element_size() for t in ts if t is not None)


def worker(args) -> None:
    import torch.distributed as dist
    from axolotl_nb.distributed import fsdp2_wrap

    dist.init_process_group('gloo')
    r, ws = dist.get_rank(), dist.get_world_size()
    if args.worker == 'fsdp2':
        model = build(args, meta=True)
        fsdp2_wrap(model)
        model.to_empty(device='cpu')
        with torch.no_grad():
            for n, p in model.named_parameters():
                if p.dim() == 1:
                    p.fill_(1.0)
                else:
                    p.normal_(0, 0.02)
            rope = type(model.model.rotary_emb)(model.config)  # non-persistent buffer, recomputed after to_empty
            model.model.rotary_emb.inv_freq = rope.inv_freq
    else:
        model = build(args, meta=False)
        model = torch.nn.parallel.DistributedDataParallel(model)
    rss_model = rss_now()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(100 + r)
    times = []
    for s in range(args.steps):
        ids = torch.randint(0, args.vocab, (args.bs, args.seq), generator=g)
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        if s == 0:
            grad_b = nbytes(p.grad for p in model.parameters())
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    params = list(model.parameters())
    opt_b = nbytes(v for st in opt.state.values() for v in st.values() if torch.is_tensor(v) and v.dim() > 0)
    res = dict(
        rank=r,
        mode=args.worker,
        param_bytes=nbytes(params),
        grad_bytes=grad_b,
        optim_bytes=opt_b,
        n_params=sum(local(p).numel() for p in params),
        peak_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        rss_model=rss_model,
        rss_end=rss_now(),
        s_per_step=sum(times[1:]) / max(len(times) - 1, 1),
        loss=float(loss),
    )
    out = [None] * ws
    dist.all_gather_object(out, res)
    if r == 0:
        Path(args.out).write_text(json.dumps(out))
    dist.destroy_process_group()


def mib(b: float) -> str:
    return f'{b / 2**20:,.1f}'


def main() -> None:
    sizes = dict(hidden=512, layers=8, vocab=8192, seq=256, bs=2, steps=3)
    ap = parser(__doc__, **sizes)
    ap.add_argument('--worker', choices=['fsdp2', 'ddp'])
    ap.add_argument('--out')
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    shared = flags(args, *sizes)
    res = {}
    with tempfile.TemporaryDirectory() as d:
        for mode in ('ddp', 'fsdp2'):
            out = Path(d) / f'{mode}.json'
            cmd = [
                sys.executable,
                '-m',
                'torch.distributed.run',
                '--nproc_per_node',
                '2',
                __file__,
                '--worker',
                mode,
                '--out',
                str(out),
                *shared,
            ]
            subprocess.run(
                cmd, check=True, env={**os.environ, 'OMP_NUM_THREADS': '1', 'MALLOC_MMAP_THRESHOLD_': '131072'}
            )
            res[mode] = json.loads(out.read_text())
    rows = [
        '| mode | rank | params held | param MiB | grad MiB | AdamW state MiB | param+grad+optim MiB | RSS after '
        'build MiB | RSS at end MiB | peak RSS MiB | s/step |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    tot = {}
    for mode in ('ddp', 'fsdp2'):
        for x in res[mode]:
            t = x['param_bytes'] + x['grad_bytes'] + x['optim_bytes']
            tot.setdefault(mode, []).append((t, x['peak_rss']))
            rows.append(
                f"| {mode.upper()} | {x['rank']} | {x['n_params']:,} | {mib(x['param_bytes'])} | "
                f"{mib(x['grad_bytes'])} | "
                f"{mib(x['optim_bytes'])} | {mib(t)} | {mib(x['rss_model'])} | {mib(x['rss_end'])} | "
                f"{mib(x['peak_rss'])} | {x['s_per_step']:.2f} |"
            )
    ratio = max(t for t, _ in tot['fsdp2']) / max(t for t, _ in tot['ddp'])
    rss = max(r for _, r in tot['fsdp2']) / max(r for _, r in tot['ddp'])
    cmd = ' '.join(['python bench/distributed.py', *shared])
    n = res['ddp'][0]['n_params']
    body = '\n'.join(
        [
            '## Distributed memory: FSDP2 vs DDP (`bench/distributed.py`)',
            '',
            f'Command: `{cmd}` (CPU, 2 processes under torchrun, gloo; shared 2-core box).',
            f'Model: Llama, hidden {args.hidden}, {args.layers} layers, vocab {args.vocab} — {n:,} parameters, fp32, '
            f'AdamW; batch {args.bs}×{args.seq} tokens per rank.',
            'FSDP2 = `axolotl_nb.distributed.fsdp2_wrap` (one unit per decoder layer + root, reshard after forward), '
            'built on the meta device and',
            'materialised shard by shard; DDP = `DistributedDataParallel`, a full replica per rank.',
            '',
            *rows,
            '',
            f'**Per-rank parameter+gradient+optimizer memory, FSDP2 / DDP: {ratio:.2f}×** (ideal with 2 ranks: 0.50). '
            f'Peak RSS FSDP2 / DDP: {rss:.2f}× — RSS also holds the Python/torch runtime (~0.4 GiB), activations, '
            f'DDP\'s gradient buckets and, '
            'under FSDP2, one unit\'s gathered weights at a time. Workers run with `MALLOC_MMAP_THRESHOLD_=131072` so '
            'that freed large '
            'tensors go back to the OS: with glibc\'s default dynamic threshold the per-layer gather/free cycles of '
            'FSDP leave freed '
            'memory in the heap and RSS stops tracking live tensors (measured without it: end RSS ≈1.27 GiB for both '
            'modes).',
        ]
    )
    publish('distributed', body, not args.no_write)


if __name__ == '__main__':
    main()
