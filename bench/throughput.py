"""Training throughput (real tokens/s): axolotl_nb multipack vs padding vs TRL `SFTTrainer(packing=True)`.

Same tiny Llama (random init, same seed), same examples, same plain training loop (AdamW step per micro-batch);
only the batches differ. Also measures the cross-document leak of each packed path on its first batch.
Writes the `throughput` section of docs/benchmarks.md.
Usage: python bench/throughput.py [--steps 4] [--seq 2048] [--device cpu|cuda] [--attn sdpa] [--no-write]

`--ab N` instead measures one lever alone: the packed attention backend (`sdpa` + block-diagonal mask vs
`packed_sdpa`, per-document sdpa without a mask) on the same packed rows, alternating N times, plus the collator's
share of a step and a `torch.profiler` table of one packed step; writes the `packed-sdpa` section.
Usage: python bench/throughput.py --ab 3 --shape smollm2 --lora --seq 512 --steps 4

`--axolotl-python PY` runs `bench/vs_axolotl.py` instead: the quickstart setting (SmolLM2 LoRA, rows of 512) through
our CLI and the real Axolotl 0.21's, with MFU and the ratio to Axolotl.
"""

from __future__ import annotations
import sys, time, warnings
from pathlib import Path

import numpy as np
import torch

from axolotl_nb.attention import PackedCollator, packed_dataloader
from axolotl_nb.packing import MultipackBatchSampler, instruction_lengths

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import gemm_flops, parser, publish  # noqa: E402
from bench import vs_axolotl  # noqa: E402

V = 8192


def tokenizer():
    "A word-level tokenizer with V ids (TRL needs a processing class; the data is pre-tokenized)."
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {'<pad>': 0, '<eos>': 1, '<unk>': 2, **{f'w{i}': i for i in range(3, V)}}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token='<unk>')),
        pad_token='<pad>',
        eos_token='<eos>',
        unk_token='<unk>',
    )


TOY = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
           vocab_size=V, max_position_embeddings=4096)
# SmolLM2-135M's shape (30 layers, hidden 576, 9/3 heads, vocab 49,152)
SMOLLM2 = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
               num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, tie_word_embeddings=True,
               rope_theta=100000.0)


def llama(shape: dict, attn: str, device: str = 'cpu', dtype=torch.float32):
    "A random-init Llama of `shape` (seed 0, pad id 0)."
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    c = LlamaConfig(pad_token_id=0, **shape)
    return LlamaForCausalLM._from_config(c, attn_implementation=attn, dtype=dtype).to(device)


def model(attn: str, device: str):
    "The tiny Llama (`TOY`): bf16 on GPU, fp32 on CPU."
    return llama(TOY, attn, device, torch.bfloat16 if device == 'cuda' else torch.float32)


def examples(n: int, seq: int, seed: int = 0) -> list[dict]:
    lens = instruction_lengths(n, seq, seed=seed)
    rng = np.random.default_rng(seed)
    return [dict(input_ids=(ids := rng.integers(3, V, L).tolist()), labels=list(ids)) for L in lens]


def pad_collate(rows: list[dict], to: int | None = None) -> dict:
    "Standard unpacked batch: right padding, 2D attention mask (HF's usual path)."
    T = to or max(len(r['input_ids']) for r in rows)
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    lab = torch.full((len(rows), T), -100)
    am = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        L = len(r['input_ids'])
        ids[i, :L] = torch.tensor(r['input_ids'])
        lab[i, :L] = torch.tensor(r['labels'])
        am[i, :L] = 1
    return dict(input_ids=ids, labels=lab, attention_mask=am)


def real_tokens(b: dict) -> int:
    if torch.is_tensor(b.get('attention_mask')) and b['attention_mask'].dim() == 2:
        return int(b['attention_mask'].sum())
    return int(sum(len(d) for d in doc_lengths(b)))


def doc_lengths(b: dict) -> list[list[int]]:
    "Per row, the documents' token index ranges (padding = tokens after the last supervised/real document)."
    out = []
    for r in range(b['input_ids'].shape[0]):
        pos, ids = b['position_ids'][r].tolist(), b['input_ids'][r].tolist()
        starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
        for s, e in zip(starts, starts[1:]):
            if any(t != 0 for t in ids[s:e]):
                out.append(list(range(s, e)))
    return out


def to_dev(x, device):
    "Move tensors, dicts of masks and BlockMasks to `device` (like `Trainer._prepare_input`)."
    if isinstance(x, dict):
        return {k: to_dev(v, device) for k, v in x.items()}
    return x.to(device) if hasattr(x, 'to') else x


def run(batches, m, steps: int, device: str, warm: int = 1) -> tuple[float, int, float, float]:
    "Plain loop: `warm` warm-up steps, then `steps` timed steps → (tokens/s, tokens, seconds, tokens per CPU-second)."
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    m.train()
    it = iter(batches)
    toks = 0

    def step(b):
        b = to_dev(b, device)
        loss = m(**b, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(warm):
        step(next(it))
    if device == 'cuda':
        torch.cuda.synchronize()
    t0, c0, cells = time.perf_counter(), time.process_time(), 0
    for _ in range(steps):
        b = next(it)
        toks += real_tokens(b)
        cells += b['input_ids'].numel()
        step(b)
    if device == 'cuda':
        torch.cuda.synchronize()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return toks / dt, toks, dt, toks / cpu, toks / cells


@torch.no_grad()
def leak(m, b: dict, device: str, **kw) -> float:
    "|loss(packed batch) − token-weighted mean loss of its documents run alone| (0 = isolated)."
    m.eval()
    bb = to_dev(b, device)
    logits = m(**{k: v for k, v in bb.items() if k != 'labels'}, **kw).logits.float()
    lab = bb['labels']
    ce = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, V), lab[:, 1:].reshape(-1), ignore_index=-100, reduction='sum'
    )
    n = int((lab[:, 1:] != -100).sum())
    packed = ce.item() / n
    tot = cnt = 0.0
    for r in range(lab.shape[0]):
        pos = bb['position_ids'][r].tolist()
        starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
        for s, e in zip(starts, starts[1:]):
            ids, y = bb['input_ids'][r : r + 1, s:e], lab[r : r + 1, s:e].clone()
            y[:, 0] = -100
            if (y != -100).sum() == 0:
                continue
            lg = m(input_ids=ids).logits.float()
            tot += torch.nn.functional.cross_entropy(lg[0, :-1], y[0, 1:], ignore_index=-100, reduction='sum').item()
            cnt += int((y[0, 1:] != -100).sum())
    m.train()
    return abs(packed - tot / cnt)


def trl_batches(m, tok, rows: list[dict], seq: int, steps: int, device: str):
    "TRL's own packed batches: `SFTTrainer(packing=True)` (BFD, padding-free, position_ids, no mask)."
    import datasets
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()
    ds = datasets.Dataset.from_list([dict(input_ids=r['input_ids']) for r in rows])
    args = SFTConfig(
        output_dir='/tmp/trl_bench',
        packing=True,
        max_length=seq,
        per_device_train_batch_size=1,
        max_steps=steps + 1,
        report_to=[],
        dataset_num_proc=None,
        logging_steps=1000,
        save_strategy='no',
        bf16=device == 'cuda',
        use_cpu=device == 'cpu',
    )
    tr = SFTTrainer(model=m, args=args, train_dataset=ds, processing_class=tok)
    return tr.get_train_dataloader()


def build(shape: str, attn: str, lora: bool):
    "`shape` 'smollm2' (SmolLM2-135M's shape, fp32) or the tiny Llama (CPU); LoRA r16 on every linear layer if `lora`."
    m = llama(SMOLLM2, attn) if shape == 'smollm2' else model(attn, 'cpu')
    if not lora:
        return m
    from peft import LoraConfig, get_peft_model

    return get_peft_model(m, LoraConfig(r=16, lora_alpha=32, target_modules='all-linear', lora_dropout=0.0))


def collate_ms(rows: list[dict], smp, coll, n: int) -> float:
    "Mean milliseconds the collator takes for one of the first `n` micro-batches (fetching rows excluded)."
    mbs = [[[rows[i] for i in b] for b in mb] for _, mb in zip(range(n), smp)]
    t0 = time.perf_counter()
    for mb in mbs:
        coll(mb)
    return 1e3 * (time.perf_counter() - t0) / len(mbs)


def profile_step(m, b: dict, top: int = 12) -> list[tuple[str, float, int]]:
    "Top ops of one training step (forward, backward, AdamW) by self CPU time: (op, % of step, calls)."
    from torch.profiler import ProfilerActivity, profile

    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
    m.train()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        m(**b, use_cache=False).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    ev = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    tot = sum(e.self_cpu_time_total for e in ev)
    return [(e.key, 100 * e.self_cpu_time_total / tot, e.count) for e in ev[:top]]


def matmul_flops_per_token(m, lora: bool) -> float:
    "Training FLOPs per token in the linear layers (lm head included; attention scores excluded): 6N full, 4N LoRA."
    base = m.get_base_model() if hasattr(m, 'get_base_model') else m
    n = sum(mod.weight.numel() for name, mod in base.named_modules()
            if isinstance(mod, torch.nn.Linear) and 'lora_' not in name)
    return (4 if lora else 6) * n


def ab_main(a):
    "The packed backend alone: block mask vs `packed_sdpa` on the same rows, alternating `a.ab` times."
    rows = examples(a.n, a.seq)
    smp = MultipackBatchSampler([len(r['input_ids']) for r in rows], a.seq, micro_batch_size=a.mbs, seed=0)
    variants = {'sdpa + block-diagonal mask': 'sdpa', '`packed_sdpa` (per-document sdpa, no mask)': 'packed_sdpa'}
    colls = {k: PackedCollator(attn) for k, attn in variants.items()}
    need = a.steps + 1
    batches = {k: [c([[rows[i] for i in b] for b in mb]) for _, mb in zip(range(need), smp)] for k, c in colls.items()}
    res = {k: [] for k in variants}
    for rep in range(a.ab):
        for k, attn in variants.items() if rep % 2 == 0 else reversed(variants.items()):
            res[k].append(run(batches[k], build(a.shape, attn, a.lora), a.steps, 'cpu', 1))
    with torch.no_grad():
        losses = {
            k: build(a.shape, attn, a.lora)(**batches[k][0], use_cache=False).loss.item()
            for k, attn in variants.items()
        }
    step_s = {k: np.median([r[2] for r in v]) / a.steps for k, v in res.items()}
    coll_ms = {k: collate_ms(rows, smp, c, need) for k, c in colls.items()}
    prof = {k: profile_step(build(a.shape, attn, a.lora), batches[k][1]) for k, attn in variants.items()}
    mfu = (matmul_flops_per_token(build(a.shape, 'sdpa', a.lora), a.lora), gemm_flops())
    return res, losses, step_s, coll_ms, prof, mfu


def ab_report(a, res, losses, step_s, coll_ms, prof, mfu) -> str:
    base, ps = list(res)
    med = {k: (np.median([r[0] for r in v]), np.median([r[3] for r in v])) for k, v in res.items()}
    cmd = (
        f'python bench/throughput.py --ab {a.ab} --shape {a.shape}'
        + (' --lora' if a.lora else '')
        + f' --seq {a.seq} --mbs {a.mbs} --steps {a.steps} --n {a.n}'
    )
    shape = (
        'SmolLM2-135M shape (30 layers, hidden 576, vocab 49,152)'
        if a.shape == 'smollm2'
        else 'Llama 4 layers, hidden 256, vocab 8,192'
    ) + (', LoRA r16 all-linear' if a.lora else ', full fine-tune')
    lines = [
        f'## Packed attention backend alone: {a.shape} model, rows of {a.seq} (`bench/throughput.py --ab`)',
        '',
        f'Command: `{cmd}`  ',
        f'CPU ({torch.get_num_threads()} thread(s), shared box), fp32, random init, {shape}. The same packed rows '
        f'({a.mbs} row(s) of ≤ {a.seq} tokens per micro-batch) on both backends, {a.ab} alternating runs of '
        f'{a.steps} timed steps each (medians); only the attention backend differs.',
        '',
        '| backend | real tokens / CPU-s | real tokens/s (wall) | s / step (wall) | collator ms / batch | first loss |',
        '|---|---|---|---|---|---|',
    ]
    for k in res:
        lines.append(
            f'| {k} | {med[k][1]:,.0f} | {med[k][0]:,.0f} | {step_s[k]:.2f} | {coll_ms[k]:.1f} | {losses[k]:.6f} |'
        )
    lines += [
        '',
        f'**`packed_sdpa` ÷ mask: {med[ps][1] / med[base][1]:.2f}x tokens per CPU-second, '
        f'{med[ps][0] / med[base][0]:.2f}x wall** (runs: CPU '
        + ', '.join(f'{x[3]:,.0f}' for x in res[ps])
        + ' vs '
        + ', '.join(f'{x[3]:,.0f}' for x in res[base])
        + '). Losses differ by '
        f'{abs(losses[ps] - losses[base]):.1e}.',
        '',
        f'The collator takes {coll_ms[base]:.1f} ms (mask) / {coll_ms[ps]:.1f} ms (flat) per micro-batch, '
        f'{100 * coll_ms[base] / 1e3 / step_s[base]:.2f} % / {100 * coll_ms[ps] / 1e3 / step_s[ps]:.2f} % of a step.',
        '',
    ]
    fpt, peak = mfu
    lines += [f'MFU (linear-layer training FLOPs/token {fpt / 1e6:,.0f} M × tokens per CPU-second ÷ this process\'s '
              f'fp32 GEMM peak, {peak / 1e9:,.0f} GFLOP per CPU-second, measured in the same run): '
              + ', '.join(f'{k} {100 * fpt * med[k][1] / peak:.0f} %' for k in res) + '.', '']
    for k, top in prof.items():
        lines += [
            f'Top ops of one packed training step (forward + backward + AdamW), {k}, by self CPU time:',
            '',
            '| op | % of step | calls |',
            '|---|---|---|',
        ]
        lines += [f'| `{n}` | {pct:.1f} | {c} |' for n, pct, c in top] + ['']
    return '\n'.join(lines)


def main():
    ap = parser(__doc__, steps=(4, 'timed steps per variant (after 1 warm-up)'), seq=2048,
                n=(400, 'examples in the pool'))
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--attn', default='sdpa', help='sdpa | eager | flash_attention_2 (GPU)')
    ap.add_argument(
        '--pad-packed', action='store_true', help='pad packed rows to --seq (static shapes; default on GPU)'
    )
    ap.add_argument('--ab', type=int, default=0, help='measure the packed attention backend alone, N alternating runs')
    ap.add_argument('--shape', default='tiny', choices=['tiny', 'smollm2'], help='model shape for --ab')
    ap.add_argument('--lora', action='store_true', help='LoRA r16 all-linear (--ab)')
    ap.add_argument('--mbs', type=int, default=1, help='packed rows per micro-batch (--ab)')
    ap.add_argument('--axolotl-python', help='python of a venv with axolotl 0.21: instead, the real SmolLM2 LoRA run '
                    'through both CLIs with MFU and the ratio to Axolotl (bench/vs_axolotl.py; --seq, default 512)')
    a = ap.parse_args()
    if a.axolotl_python:  # one process per side, end to end: its own script, its own section
        seq = a.seq if '--seq' in sys.argv else 512
        return vs_axolotl.main(['--axolotl-python', a.axolotl_python, '--seq', str(seq)] + ['--no-write'] * a.no_write)
    warnings.filterwarnings('ignore')
    if a.ab:
        body = ab_report(a, *ab_main(a))
        publish(f'packed-sdpa-{a.shape}-{a.seq}', body, not a.no_write)
        return
    rows, tok, res = examples(a.n, a.seq), tokenizer(), {}
    lens = [len(r['input_ids']) for r in rows]
    W = 3 if a.device == 'cuda' else 1
    need = a.steps + W

    # ours: multipack, 1 packed row per micro-batch
    smp = MultipackBatchSampler(lens, a.seq, micro_batch_size=1, seed=0)
    static = a.pad_packed or a.device == 'cuda'
    ours = list(
        packed_dataloader(
            rows,
            smp,
            PackedCollator(
                a.attn,
                pad_token_id=0,
                max_len=a.seq if static else None,
                device=a.device if a.attn == 'flex_attention' else None,
            ),
        )
    )[:need]
    m = model(a.attn, a.device)
    res['axolotl_nb multipack (1 row × seq)'] = run(ours, m, a.steps, a.device, W)
    ours_leak = leak(m, ours[-1], a.device) if a.attn != 'flash_attention_2' else None  # model defaults (use_cache on)
    ps_leak = None
    if a.attn == 'sdpa':  # the same bins, per-document sdpa instead of a T×T mask
        flat = list(packed_dataloader(rows, smp, PackedCollator('packed_sdpa', pad_token_id=0)))[:need]
        m = model('packed_sdpa', a.device)
        res['axolotl_nb multipack + `packed_sdpa` (per-document sdpa, no mask)'] = run(flat, m, a.steps, a.device, W)
        ps_leak = leak(m, flat[-1], a.device)
    # padding baselines (shuffled order)
    order = np.random.default_rng(0).permutation(len(rows))
    pad_full = [pad_collate([rows[i]], a.seq) for i in order[:need]]
    m = model(a.attn, a.device)
    res['padded to sequence_len (1 example/row, mbs 1)'] = run(pad_full, m, a.steps, a.device, W)
    k = 4
    pad_dyn = [pad_collate([rows[i] for i in order[j * k : (j + 1) * k]]) for j in range(need)]
    m = model(a.attn, a.device)
    res[f'padded to longest in batch (mbs {k})'] = run(pad_dyn, m, a.steps, a.device, W)
    # TRL
    trl_leak = None
    try:
        m = model(a.attn, a.device)
        dl = trl_batches(m, tok, rows, a.seq, a.steps + W - 1, a.device)
        tb = [b for _, b in zip(range(need), dl)]
        trl_leak = (
            leak(m, tb[-1], a.device, use_cache=False),
            leak(m, tb[-1], a.device, use_cache=True),
        )  # as TRL runs it / cache on
        m = model(a.attn, a.device)
        res['TRL SFTTrainer(packing=True) batches'] = run(tb, m, a.steps, a.device, W)
    except Exception as e:
        print(f'TRL run failed: {type(e).__name__}: {e}')

    base = res['axolotl_nb multipack (1 row × seq)'][0]
    dev = torch.cuda.get_device_name() if a.device == 'cuda' else f'CPU ({torch.get_num_threads()} threads, shared box)'
    lines = [
        '## Training throughput (`bench/throughput.py`)',
        '',
        f'Command: `python bench/throughput.py --steps {a.steps} --seq {a.seq} --n {a.n} --device {a.device} '
        f'--attn {a.attn}'
        + (' --pad-packed' if a.pad_packed else '')
        + '`  ',
        f'Device: {dev}. Model: Llama 4 layers, hidden 256, vocab {V}, random init, '
        f"{'bf16' if a.device == 'cuda' else 'fp32'}, attn `{a.attn}`. Examples: log-normal lengths (median "
        f"~300, clipped to {a.seq}). "
        'Same plain loop (forward+backward+AdamW per micro-batch) for every row; only the batches differ; '
        f'{W} warm-up step(s), then timed steps'
        + ('; packed rows padded to the sequence length (static shapes)' if static else '')
        + '.',
        '',
        'On the shared CPU box wall time depends on the other tenants, so the process CPU time is shown too '
        '(tokens per CPU-second, summed over torch threads) and the ratios are given for both.',
        '',
        '| batches | real tokens/s (wall) | tokens / CPU-s | tokens | batch fill | wall s | ours ÷ this (wall) '
        '| ours ÷ this (CPU) |',
        '|---|---|---|---|---|---|---|---|',
    ]
    bc = res['axolotl_nb multipack (1 row × seq)'][3]
    for name, (tps, toks, dt, tpc, fill) in res.items():
        lines.append(
            f'| {name} | {tps:,.0f} | {tpc:,.0f} | {toks:,} | {fill:.0%} | {dt:.1f} | {base / tps:.2f}x | '
            f'{bc / tpc:.2f}x |'
        )
    lines += [
        '',
        'Batch fill = real tokens / tokens in the batch tensors. The packed-vs-padded speed-up is bounded by the '
        'ratio of fills: ≥ 3x holds against padding to `sequence_len` (the fixed-shape baseline), while against '
        'padding to the longest example of a random micro-batch the ceiling is fill(packed) / fill(padded) ≈ the '
        'measured ratio — no packer can beat that on this length distribution.',
    ]
    fl = lambda x: 'n/a' if x is None else f'{x:.2e}'
    lines += [
        '',
        'Cross-document leak on a packed batch (|packed loss − token-weighted loss of its documents run alone|, '
        'fp32 unless GPU):',
        "- axolotl_nb (4D block-diagonal mask, model defaults): "
        f"{'n/a (flash varlen)' if ours_leak is None else fl(ours_leak)}",
        f"- axolotl_nb `packed_sdpa`: {fl(ps_leak)}",
        f"- TRL SFTTrainer(packing=True) batch on `{a.attn}` with `use_cache=False` (what TRL 1.16's "
        "`compute_loss` forces): "
        f"{fl(trl_leak and trl_leak[0])}",
        "- the same TRL batch with `use_cache=True` (the config default; any loop/trainer that does not force "
        "it off): "
        f"{fl(trl_leak and trl_leak[1])}",
        '',
        'TRL sends `position_ids` and no mask. On sdpa/eager, transformers 5.23 isolates documents only if it '
        'can infer '
        'them from `position_ids`, which it skips whenever a cache object exists (`use_cache` defaults to on) or a 2D '
        'mask is passed; TRL 1.16 forces `use_cache=False` in `compute_loss`, so its packing is isolated there but '
        'leaks as soon as the batch is used elsewhere. axolotl_nb sends the mask explicitly and does not depend on it.',
    ]
    body = '\n'.join(lines)
    publish('throughput' if a.device == 'cpu' else 'throughput-gpu', body, not a.no_write)


if __name__ == '__main__':
    main()
