"""Peak memory of LoRA training at a 128k vocabulary on CPU: HF's default loss, our chunked loss, TRL's fused head.

    nice python bench/memory.py          # 3 variants × 3 steps, writes the `memory` section of docs/benchmarks.md
    nice python bench/memory.py --steps 2 --no-write --variants ours

Model: random-init Llama with Llama-3-8B's vocabulary (128,256, untied head), hidden 2048, 2 decoder layers (GQA
32/8, MLP 8192), fp32; LoRA r=16 α=32 on every linear layer (PEFT `all-linear`: the head stays frozen). Data: random
documents packed into rows of exactly `--seq` tokens (positions restart per document, the first token of each
document is not a target), micro batch 1. Every variant runs in its own fresh process, from the same seed, on the same
rows, through a `transformers.Trainer` (TRL: its own `SFTTrainer`, whose loss is the fused LM head it patches in):

- `hf`: `Trainer` + the model's own loss (full logits, `ForCausalLMLoss`);
- `ours`: `Trainer` whose `compute_loss` is `axolotl_nb.loss.causal_lm_loss` (what `AxolotlTrainer` calls);
- `trl`: `trl.SFTTrainer` 1.16 (`add_fused_lm_head`: per-token log-probs in tiles, no logits returned).

Peak RSS is Linux `VmHWM`, reset (`/proc/self/clear_refs`) after the model, adapter and trainer are built, so the
"training" column is what the steps add on top of the weights. CPU seconds are the process's user+system time over
the timed steps (after one warm-up step): on a shared machine they are steadier than wall time.
"""
import argparse, json, os, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench._common import flags, parser, publish, result, run_worker, status_mib  # noqa: E402

VARIANTS = {'hf': 'HF default loss (full logits)', 'ours': 'axolotl_nb chunked loss',
            'trl': 'TRL 1.16 SFTTrainer (fused LM head)'}

def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system

def packed_rows(n_rows:int, seq:int, vocab:int, seed:int=0) -> list[dict]:
    "Rows of exactly `seq` tokens made of random documents (log-normal lengths, median 300)."
    import numpy as np
    rng, rows = np.random.default_rng(seed), []
    for _ in range(n_rows):
        ids, pos = [], []
        while len(ids) < seq:
            n = min(int(np.clip(rng.lognormal(np.log(300), 0.9), 16, seq)), seq - len(ids))
            ids += rng.integers(3, vocab, n).tolist()
            pos += list(range(n))
        labels = [-100 if p == 0 else t for t, p in zip(ids, pos)]
        rows.append(dict(input_ids=ids, position_ids=pos, labels=labels))
    return rows

def build_model(a):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    c = LlamaConfig(vocab_size=128_256, hidden_size=a.hidden, intermediate_size=4 * a.hidden, num_hidden_layers=2,
                    num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False, use_cache=False,
                    max_position_embeddings=8192, attn_implementation='sdpa')
    torch.manual_seed(0)
    model = LlamaForCausalLM(c)
    lc = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules='all-linear', task_type='CAUSAL_LM')
    return get_peft_model(model, lc)

def collate(rows:list[dict]) -> dict:
    import torch
    return {k: torch.tensor([r[k] for r in rows]) for k in ('input_ids', 'position_ids', 'labels')}

def make_trainer(variant:str, model, ds, a):
    from transformers import Trainer, TrainingArguments
    common = dict(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=1, max_steps=a.steps, learning_rate=1e-4,
                  lr_scheduler_type='constant', warmup_steps=0, weight_decay=0.0, logging_steps=1, save_strategy='no',
                  report_to='none', disable_tqdm=True, remove_unused_columns=False, seed=0, use_cpu=True,
                  dataloader_num_workers=0)
    if variant == 'trl':
        from trl import SFTConfig, SFTTrainer
        args = SFTConfig(**common, packing=False, max_length=None, dataset_kwargs={'skip_prepare_dataset': True})
        from axolotl_nb.models import tiny_tokenizer  # SFTTrainer wants a processing class; the rows are already ids
        return SFTTrainer(model=model, args=args, train_dataset=ds, data_collator=collate,
                          processing_class=tiny_tokenizer())
    args = TrainingArguments(**common)
    if variant == 'hf': return Trainer(model=model, args=args, train_dataset=ds, data_collator=collate)
    from axolotl_nb.loss import add_chunked_loss, causal_lm_loss
    add_chunked_loss(model)
    class ChunkedTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = causal_lm_loss(model, inputs, num_items_in_batch if self.model_accepts_loss_kwargs else None)
            return (loss, None) if return_outputs else loss
    return ChunkedTrainer(model=model, args=args, train_dataset=ds, data_collator=collate)

def run_variant(variant:str, a) -> dict:
    "Train `a.steps` steps in this process; peak RSS over them, CPU time and tokens/s after the first step."
    import datasets, torch
    from transformers import TrainerCallback
    torch.set_num_threads(a.threads)
    ds = datasets.Dataset.from_list(packed_rows(a.steps, a.seq, 128_256))
    model = build_model(a)
    tr = make_trainer(variant, model, ds, a)
    marks = []
    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw): marks.append((time.perf_counter(), _cpu_s()))
    tr.add_callback(Clock())
    weights_mb = status_mib('VmRSS')
    open('/proc/self/clear_refs', 'w').write('5')  # VmHWM := VmRSS: the peak from here on is training's
    tr.train()
    peak = status_mib('VmHWM')
    (w0, c0), (w1, c1) = marks[0], marks[-1]
    timed = (len(marks) - 1) * a.seq
    losses = [h['loss'] for h in tr.state.log_history if 'loss' in h]
    return dict(variant=variant, weights_mb=weights_mb, peak_mb=peak, train_mb=peak - weights_mb, losses=losses,
                tokens_per_s=timed / (w1 - w0), tokens_per_cpu_s=timed / (c1 - c0),
                cpu_s_per_step=(c1 - c0) / (len(marks) - 1))

def table(res:dict, a) -> str:
    "The markdown section: one row per variant, ratios to HF's default loss, loss agreement."
    import torch
    hf, ours = res.get('hf'), res.get('ours')
    lines = [f"Command: `nice python bench/memory.py --steps {a.steps} --seq {a.seq} --hidden {a.hidden}` (CPU, "
             f"{a.threads} threads, each variant in its own process, torch {torch.__version__}).",
             f"Model: random-init Llama, vocab 128,256 (untied head), hidden {a.hidden}, 2 layers, fp32, LoRA r=16 on "
             f"every linear layer; packed rows of {a.seq} tokens, micro batch 1, {a.steps} steps (the first is warm-up "
             "for the timings). *Training peak* is the process's peak RSS minus its RSS after model + trainer setup.",
             "", "| variant | peak RSS (MiB) | training peak (MiB) | ÷ HF default | tokens/s (wall) | tokens per CPU-s "
             "| step-1 loss |", "|---|---|---|---|---|---|---|"]
    for k, r in res.items():
        ratio = f"{r['train_mb'] / hf['train_mb']:.2f}x" if hf else '–'
        lines.append(f"| {VARIANTS[k]} | {r['peak_mb']:,.0f} | {r['train_mb']:,.0f} | {ratio} | "
                     f"{r['tokens_per_s']:.1f} | {r['tokens_per_cpu_s']:.1f} | {r['losses'][0]:.6f} |")
    if hf and ours:
        dl = max(abs(x - y) for x, y in zip(hf['losses'], ours['losses']))
        lines += ["", f"Loss, ours vs HF default, max |Δ| over the {len(hf['losses'])} logged steps: {dl:.2e}. "
                  f"Throughput ours ÷ HF default: {ours['tokens_per_cpu_s'] / hf['tokens_per_cpu_s']:.2f}x per CPU-s, "
                  f"{ours['tokens_per_s'] / hf['tokens_per_s']:.2f}x wall."]
    if ours and 'trl' in res:
        t = res['trl']
        dt = max(abs(x - y) for x, y in zip(t['losses'], ours['losses']))
        lines.append(f"Ours vs TRL: loss max |Δ| {dt:.2e}; training peak {ours['train_mb'] / t['train_mb']:.2f}x; "
                     f"throughput {ours['tokens_per_cpu_s'] / t['tokens_per_cpu_s']:.2f}x per CPU-second.")
    return '## Memory: chunked cross-entropy vs HF default vs TRL (CPU, `bench/memory.py`)\n\n' + '\n'.join(lines)

def main():
    ap = parser(__doc__, steps=(3, 'optimizer steps; the first is warm-up for the timings (at least 2)'), seq=2048,
                hidden=2048, threads=2)
    ap.add_argument('--variants', default='hf,ours,trl')
    ap.add_argument('--one', default=None, help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    a = ap.parse_args()
    if a.steps < 2: ap.error(f'--steps {a.steps}: at least 2 (the first step is warm-up, the timings are the rest)')
    if a.one: return result(run_variant(a.one, a))
    res = {}
    env = {**os.environ, 'OMP_NUM_THREADS': str(a.threads), 'TOKENIZERS_PARALLELISM': 'false'}
    for v in a.variants.split(','):
        cmd = [sys.executable, __file__, '--one', v, *flags(a, 'steps', 'seq', 'hidden', 'threads')]
        res[v] = run_worker(cmd, f'variant {v}', env)
        print(json.dumps(res[v]), flush=True)
    md = table(res, a)
    publish('memory', md, not a.no_write)

if __name__ == '__main__': main()
