"""Offline quickstart, end to end: evaluate the base model → LoRA-train → evaluate again → merge → generate.

    python scripts/quickstart.py [examples/quickstart.yml] [--key value ...]   (or: bash scripts/quickstart.sh)

Prints eval loss, perplexity and task accuracy (exact match on the held-out split) before vs after training.
"""
import json, shutil, sys, time
from contextlib import contextmanager
from pathlib import Path

from axolotl_nb.config import UserError
from axolotl_nb.prepare import resolve_path
from axolotl_nb.load import load_config, summary

MARKER = '.axolotl_nb_quickstart'  # written into output_dir: "this folder is a quickstart run of ours"

def fresh_output_dir(out:Path) -> str|None:
    "Make `out` an empty folder for a new run; returns why not (a message) when it holds anything we did not create."
    if out.exists() and not out.is_dir(): return f"output_dir {out} is a file, not a folder"
    if out.is_dir() and any(out.iterdir()):
        if not (out/MARKER).exists():
            return (f"output_dir {out} is not empty and holds no quickstart run, so the quickstart will not touch it; "
                    "pass --output_dir NEW_FOLDER (or empty that folder yourself)")
        shutil.rmtree(out)  # a previous quickstart run: it wrote the marker, so everything in it is ours to replace
    out.mkdir(parents=True, exist_ok=True)
    (out/MARKER).write_text("written by scripts/quickstart.py; a rerun replaces this folder\n")
    return None

def main(argv:list[str]) -> int:
    t_start = time.perf_counter()
    given = bool(argv) and not argv[0].startswith('--')
    path = argv[0] if given else str(Path(__file__).resolve().parent.parent/'examples'/'quickstart.yml')
    overrides = argv[1:] if given else argv
    # eval before/after is measured here, so the training loop itself skips evaluation
    try: cfg = load_config(path, list(overrides))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfg.eval_strategy = 'no'
    print(summary(cfg), flush=True)
    if (why := fresh_output_dir(Path(cfg.output_dir))) is not None:
        print(f"error: {why}", file=sys.stderr)
        return 2
    # the heavy modules (torch, transformers) load only now, so a refused output_dir is reported in a second
    from axolotl_nb.run import train
    from axolotl_nb.trainer import build_trainer
    from axolotl_nb.inference import load_for_inference, exact_match, generate
    from axolotl_nb.data import load_datasets
    from axolotl_nb.lora import merge_lora
    ev_path = resolve_path(cfg, cfg.test_datasets[0]['path'])
    rows = [json.loads(l) for l in ev_path.read_text().splitlines() if l.strip()]
    times, res = {}, {}

    @contextmanager
    def stage(key:str, title:str|None=None):
        "Print the heading `title` (if any), then time the block into `times[key]`."
        if title: print(f"\n== {title}", flush=True)
        t = time.perf_counter()
        yield
        times[key] = time.perf_counter() - t

    def measure(tag:str, base_only:bool, title:str):
        with stage(f'evaluate ({tag})', title):
            model, tok, what = load_for_inference(cfg, base_only=base_only)
            _, eval_ds, _ = load_datasets(cfg, tok)
            m = build_trainer(cfg, model, tok, None, eval_ds, report_to='none', disable_tqdm=True).evaluate()
            acc, per = exact_match(model, tok, rows, max_new_tokens=12)
            res[tag] = dict(model=what, eval_loss=m['eval_loss'], perplexity=m['eval_perplexity'], accuracy=acc,
                            examples=per[:3])
        print(f"\n[{tag}] {what}: eval loss {m['eval_loss']:.4f}, perplexity {m['eval_perplexity']:.3f}, "
              f"exact-match accuracy {acc:.1%} ({sum(p['correct'] for p in per)}/{len(per)})", flush=True)
        for p in per[:3]: print(f"   {p['prompt']!r} → {p['output']!r} (want {p['reference']!r})")

    measure('before', True, '1. base model, before training')
    with stage('train', '2. LoRA training'): s = train(cfg)
    print(s, flush=True)
    measure('after', False, '3. trained adapter, after training')
    with stage('merge', '4. merge the adapter into the base'): merged = merge_lora(cfg)
    print(f"merged model: {merged}")
    with stage('generate', '5. a sample generation from the merged model'):
        mcfg = cfg.model_copy(update={'base_model': str(merged), 'adapter': None, 'output_dir': str(merged)})
        model, tok, _ = load_for_inference(mcfg, base_only=True)
        q = "Convert this date to ISO 8601 (YYYY-MM-DD): the 4th of July, 1976"
        ans = generate(model, tok, q, max_new_tokens=12)
    print(f"{q}\n→ {ans}")
    b, a = res['before'], res['after']
    total = time.perf_counter() - t_start
    print(f"""
== result ({cfg.base_model.split('/')[-1]}, {len(rows)} held-out examples)
                 before      after
eval loss      {b['eval_loss']:8.4f}   {a['eval_loss']:8.4f}
perplexity     {b['perplexity']:8.3f}   {a['perplexity']:8.3f}
accuracy       {b['accuracy']:8.1%}   {a['accuracy']:8.1%}
merged sample  {ans!r} (expected '1976-07-04')
time           {', '.join(f'{k} {v:.0f}s' for k, v in times.items())}; total {total:.0f}s ({total/60:.1f} min)""")
    out = Path(cfg.output_dir)/'quickstart_result.json'
    out.write_text(json.dumps(dict(before=b, after=a, sample=ans, times=times, total_s=total), indent=1, default=str))
    ok = a['eval_loss'] < b['eval_loss'] and a['accuracy'] > b['accuracy']
    print("improved ✓" if ok else "WARNING: no improvement", flush=True)
    return 0 if ok else 1

if __name__ == '__main__': sys.exit(main(sys.argv[1:]))
