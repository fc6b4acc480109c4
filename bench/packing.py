"""Packing efficiency and speed: axolotl_nb `pack` vs the lower bound, Axolotl-style first-fit, and TRL's BFD.

Writes the `packing` section of docs/benchmarks.md. Usage: python bench/packing.py [--n 100000] [--no-write]
"""

from __future__ import annotations
import sys, time
from pathlib import Path

import numpy as np
from numba import njit

from axolotl_nb.packing import efficiency, instruction_lengths, lower_bound, pack

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._common import parser, publish  # noqa: E402


@njit(cache=True)
def _axolotl_pack_group(items, capacity, max_items_per_bin):
    "Axolotl's `pack_group` (multipack.py): first-fit in the given (sampler) order, no sort, ≤ max items per bin."
    n = items.shape[0]
    room = np.empty(n, np.int64)
    count = np.zeros(n, np.int64)
    where = np.empty(n, np.int64)
    nb = 0
    for i in range(n):
        s = items[i]
        placed = False
        for b in range(nb):
            if room[b] >= s and count[b] < max_items_per_bin:
                room[b] -= s
                count[b] += 1
                where[i] = b
                placed = True
                break
        if not placed:
            room[nb] = capacity - s
            count[nb] = 1
            where[i] = nb
            nb += 1
    return where, nb


def axolotl_first_fit(
    lengths: np.ndarray, capacity: int, group_size: int = 100_000, bin_size: int = 200
) -> list[list[int]]:
    "Axolotl's multipack allocation: groups of `group_size` in sampler order, first-fit within each group."
    bins = []
    for s in range(0, len(lengths), group_size):
        where, nb = _axolotl_pack_group(lengths[s : s + group_size], capacity, bin_size)
        g = [[] for _ in range(nb)]
        for i, b in enumerate(where.tolist()):
            g[b].append(s + i)
        bins += g
    return bins


def trl_bfd(lengths: np.ndarray, capacity: int, batch_size: int | None = None) -> int:
    "Rows produced by TRL's `pack_dataset(strategy='bfd')` (default map batch of 1000, or `batch_size`)."
    import datasets, pyarrow as pa
    from trl.data_utils import pack_dataset

    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    col = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(np.ones(int(offsets[-1]), np.int32)))
    ds = datasets.Dataset(datasets.table.InMemoryTable(pa.table({'input_ids': col})))
    kw = dict(map_kwargs=dict(batch_size=batch_size)) if batch_size else {}
    datasets.disable_progress_bars()
    out = pack_dataset(ds, capacity, strategy='bfd', **kw)
    packed = np.asarray(out.data.column('seq_lengths').combine_chunks().flatten())
    assert packed.sum() == lengths.sum(), "TRL dropped tokens"
    return len(out)


def shipped_lengths() -> np.ndarray | None:
    "Token lengths of the shipped quickstart data (SmolLM2 chat template), if its tokenizer is cached."
    import json, glob, os

    cands = glob.glob(os.path.expanduser('~/.cache/axolotl_nb/gguf/SmolLM2*'))
    if not cands:
        return None
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(cands[0])
    rows = []
    for f in sorted((ROOT / 'examples/data').glob('*.jsonl')):
        for l in open(f):
            try:
                r = json.loads(l)
            except ValueError:
                continue
            if isinstance(r, dict) and 'messages' in r:
                rows.append(r)
    if not rows:
        return None

    def n(r):
        ids = tok.apply_chat_template(r['messages'], tokenize=True)
        return len(ids['input_ids'] if isinstance(ids, dict) or hasattr(ids, 'keys') else ids)

    return np.array([n(r) for r in rows], dtype=np.int64)


def timed(f, *a, **k):
    t0 = time.perf_counter()
    r = f(*a, **k)
    return r, time.perf_counter() - t0


def bench(lengths: np.ndarray, cap: int, name: str, seed: int = 0) -> list[dict]:
    "Every packer on the same sampler-order (shuffled) lengths."
    order = np.random.default_rng(seed).permutation(len(lengths))
    ls = np.minimum(lengths, cap)[order]
    tot, lb = int(ls.sum()), lower_bound(ls, cap)
    rows = [dict(dist=name, cap=cap, method='lower bound ceil(Σlen/cap)', bins=lb, eff=tot / (lb * cap), sec=None)]

    def add(method, nbins, sec):
        rows.append(dict(dist=name, cap=cap, method=method, bins=nbins, eff=tot / (nbins * cap), sec=sec))

    b, t = timed(pack, ls, cap)
    add('axolotl_nb pack (BFD, groups of 100k)', len(b), t)
    assert efficiency(ls, b, cap) == tot / (len(b) * cap)
    b, t = timed(pack, ls, cap, group_size=None)
    add('axolotl_nb pack (BFD, one group)', len(b), t)
    b, t = timed(axolotl_first_fit, ls, cap)
    add('Axolotl-style first-fit, sampler order', len(b), t)
    n, t = timed(trl_bfd, ls, cap)
    add('TRL pack_dataset bfd (default map batch 1000)', n, t)
    if len(ls) <= 200_000:
        n, t = timed(trl_bfd, ls, cap, batch_size=len(ls))
        add('TRL pack_dataset bfd (one batch)', n, t)
    return rows


def main():
    a = parser(__doc__, n=(100_000, 'examples in the synthetic distribution')).parse_args()
    pack(np.array([1, 2]), 4)
    _axolotl_pack_group(np.array([1, 2]), 4, 200)  # JIT warm-up, not timed
    rows = []
    for cap in (512, 2048, 8192):
        rows += bench(instruction_lengths(a.n, 4096, seed=0), cap, f'log-normal n={a.n:,} (median 300, tail 4k)')
    sl = shipped_lengths()
    if sl is not None:
        for cap in (512, 2048):
            rows += bench(sl, cap, f'shipped quickstart n={len(sl)} (median {int(np.median(sl))})')
    # checks against the goals
    for r in rows:
        if r['method'].startswith('axolotl_nb'):
            peers = [
                p
                for p in rows
                if p['dist'] == r['dist']
                and p['cap'] == r['cap']
                and not p['method'].startswith(('axolotl_nb', 'lower'))
            ]
            r['vs_peers'] = 'ok' if all(r['bins'] <= p['bins'] for p in peers) else 'WORSE'
    lines = [
        '## Packing (`bench/packing.py`)',
        '',
        f'Command: `python bench/packing.py --n {a.n}` (CPU, shared 2-core box; seconds are wall time, JIT warm).',
        'Same shuffled (sampler-order) lengths for every packer; lengths clipped to the capacity; efficiency = '
        'real tokens / (bins × capacity).',
        '',
        '| distribution | seq | method | bins | efficiency | seconds | ≤ peers' + "' bins |",
        '|---|---|---|---|---|---|---|',
    ]
    for r in rows:
        lines.append(
            f"| {r['dist']} | {r['cap']} | {r['method']} | {r['bins']:,} | {r['eff']:.4%} | "
            + ('' if r['sec'] is None else f"{r['sec']:.2f}")
            + f" | {r.get('vs_peers', '')} |"
        )
    g = [r for r in rows if r['cap'] == 2048 and r['method'].startswith('axolotl_nb') and 'log-normal' in r['dist']]
    lines += [
        '',
        f"Goal ≥ 99.5 % at 2048: {'met' if all(r['eff'] >= 0.995 for r in g) else 'NOT met'} "
        '('
        + ', '.join(f"{r['eff']:.3%}" for r in g)
        + '); never below a peer: '
        + ('met' if all(r.get('vs_peers') == 'ok' for r in rows if 'vs_peers' in r) else 'NOT met')
        + '.',
    ]
    body = '\n'.join(lines)
    publish('packing', body, not a.no_write)


if __name__ == '__main__':
    main()
