#!/usr/bin/env python
"""Validate Axolotl's own example configs with axolotl_nb and tally the results by cause.

    python scripts/axolotl_examples.py /path/to/axolotl/examples  # e.g. `git archive` of axolotl-ai-cloud/axolotl

As an Axolotl user would try it: `base_model` and every dataset `path` are pointed at local files first (we are
offline), everything else is left as written. Prints one line per cause (the problem text with the config-specific
parts removed) and the count of configs it blocks.
"""
from __future__ import annotations
import collections, re, sys, tempfile
from pathlib import Path

import yaml

from axolotl_nb.config import UserError
from axolotl_nb.load import load_config

SKIP = ('cloud/', 'slurm/', 'colab-notebooks/')  # launcher / notebook settings, not training configs


def localize(raw: dict, data: Path) -> dict:
    "Point the model and every dataset at local files, as the issue's recipe says."
    raw = dict(raw)
    if 'base_model' in raw: raw['base_model'] = str(data.parent / 'model')
    for k in ('datasets', 'test_datasets', 'pretraining_dataset'):
        if isinstance(raw.get(k), list):
            raw[k] = [dict(e, path=str(data)) if isinstance(e, dict) and 'path' in e else e for e in raw[k]]
    return raw


def cause(p: str) -> str:
    "A problem line without the config-specific parts, so equal causes group."
    p = re.sub(r'^(test_)?datasets\[\d+\]', r'\1datasets[i]', p)
    p = re.sub(r'\(got .*?\)', '(got …)', p)
    return p.split(' — fix:')[0][:150]


def main(folder: str):
    root = Path(folder)
    files = sorted(f for f in root.rglob('*.y*ml') if not any(s in str(f.relative_to(root)) for s in SKIP))
    tmp = Path(tempfile.mkdtemp())
    data = tmp / 'data.jsonl'
    data.write_text('{"instruction": "a", "input": "", "output": "b"}\n')
    (tmp / 'model').mkdir()
    ok, bad, causes, unreadable = [], {}, collections.Counter(), []
    for f in files:
        try: raw = yaml.safe_load(f.read_text())
        except yaml.YAMLError:
            unreadable.append(f)
            continue
        if not isinstance(raw, dict) or 'base_model' not in raw:
            unreadable.append(f)
            continue
        try:
            load_config(localize(raw, data))
            ok.append(f)
        except UserError as e:
            ps = [str(p) for p in getattr(e, 'problems', [])] or [str(e)]
            bad[f] = ps
            for c in {cause(p) for p in ps}: causes[c] += 1
        except Exception as e:  # a traceback is a bug of ours: count it loudly
            bad[f] = [f"CRASH {type(e).__name__}: {e}"]
            causes[f"CRASH {type(e).__name__}"] += 1
    n = len(ok) + len(bad)
    print(f"{len(ok)}/{n} Axolotl example configs validate ({len(unreadable)} files skipped: not a training config)")
    kinds = collections.Counter(frozenset(kind(p) for p in ps) for ps in bad.values())
    for ks, k in kinds.most_common(): print(f"  {k:4d} fail with: {' + '.join(sorted(ks))}")
    for c, k in causes.most_common(): print(f"{k:4d}  {c}")
    return ok, bad, causes


def kind(p: str) -> str:
    "The class of a problem: a named missing feature (class 4), an unknown key, or a rule / value error."
    if 'not supported yet' in p: return 'class-4 feature'
    if 'is not a config key' in p: return 'unknown key'
    if p.startswith('CRASH'): return 'crash'
    return 'rule/value error'


if __name__ == '__main__': main(sys.argv[1] if len(sys.argv) > 1 else '/tmp/axex/examples')
