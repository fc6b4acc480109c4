#!/usr/bin/env python
"""Regenerate `axolotl_nb/axolotl_keys.json`: the names (with type, default and a one-line meaning) of every key of
Axolotl's config schema, read from its own pydantic models in the published wheel.

    python scripts/axolotl_registry.py            # downloads axolotl==0.21.0 (no deps) into a temp dir
    python scripts/axolotl_registry.py --wheel /tmp/axwheel/axolotl-0.21.0-py3-none-any.whl

Only key names, types, defaults and the first sentence of each description are kept (interface facts);
no Axolotl code is vendored. The wheel needs Python >= 3.12, so it is downloaded with `--python-version 3.12`
and imported from the unpacked folder; the two third-party imports its schema modules touch but that
axolotl_nb does not install (`addict`, `kernels`, `llmcompressor`) are stubbed.
"""
from __future__ import annotations
import argparse, importlib, importlib.abc, importlib.machinery, json, re, subprocess, sys, tempfile, types, typing
import zipfile
from pathlib import Path

VERSION = '0.21.0'
OUT = Path(__file__).resolve().parents[1] / 'axolotl_nb' / 'axolotl_keys.json'
STUB = {'addict', 'kernels', 'llmcompressor'}
PLUGINS = ['liger', 'cut_cross_entropy', 'kernels', 'kd', 'spectrum', 'lm_eval', 'grokfast', 'llm_compressor',
           'mora', 'densemixer', 'diffusion', 'diffusion_decision', 'context_parallel', 'expert_parallel', 'swanlab',
           'hatchery', 'nemo_gym', 'coreweave']


class _Stub(types.ModuleType):
    __path__: list = []
    def __getattr__(self, n):
        if n.startswith('__'): raise AttributeError(n)
        t = type(n, (), {'__init__': lambda s, *a, **k: None, '__call__': lambda s, *a, **k: None})
        setattr(self, n, t)
        return t


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] not in STUB: return None
        return importlib.machinery.ModuleSpec(name, self, is_package=True)
    def create_module(self, spec): return _Stub(spec.name)
    def exec_module(self, m): pass


def _wheel(path: str | None) -> Path:
    if path: return Path(path)
    d = Path(tempfile.mkdtemp())
    subprocess.run([sys.executable, '-m', 'pip', 'download', f'axolotl=={VERSION}', '--no-deps', '--only-binary=:all:',
                    '--python-version', '3.12', '-d', str(d)], check=True)
    return next(d.glob('axolotl-*.whl'))


def _type(ann) -> str:
    s = str(ann).replace('typing.', '').replace("<class '", '').replace("'>", '')
    s = re.sub(r'axolotl\.[\w.]+\.', '', s)
    return s.replace('NoneType', 'None')


def _doc(f) -> str:
    extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
    d = f.description or extra.get('description')
    d = ' '.join(str(d or '').split())
    d = re.split(r'(?<=[.!?])\s', d, maxsplit=1)[0]
    return d if len(d) <= 110 else d[:107].rstrip() + '...'


def _default(f):
    if f.is_required(): return None
    v = f.default
    if hasattr(v, 'value'): v = v.value
    try:
        json.dumps(v)
        return v
    except TypeError: return None


def _fields(*models) -> dict:
    out = {}
    for m in models:
        for name, f in m.model_fields.items():
            key = f.validation_alias if isinstance(f.validation_alias, str) else (f.alias or name)
            out.setdefault(key, {'type': _type(f.annotation), 'default': _default(f), 'doc': _doc(f)})
    return dict(sorted(out.items()))


def _values(ann) -> list:
    "Every Literal / Enum value inside a type annotation (the values Axolotl accepts for a key)."
    import enum
    out = []
    if isinstance(ann, type) and issubclass(ann, enum.Enum): return [x.value for x in ann]
    if getattr(ann, '__origin__', None) is typing.Literal: return list(ann.__args__)
    for a in getattr(ann, '__args__', ()) or (): out += _values(a)
    return out


VALUE_KEYS = ('rl', 'optimizer', 'lr_scheduler', 'chat_template', 'adapter', 'attn_implementation',
              'gradient_checkpointing', 'excess_length_strategy')


def _plugin_args(d: Path, name: str):
    "The pydantic class a plugin registers with `get_input_args` (its config keys join the top level)."
    for f in sorted(d.glob('*.py')):
        m = re.search(r'def get_input_args\(self\).{0,300}?return ["\']([\w.]+)["\']', f.read_text(), re.S)
        if m:
            mod, _, cls = m.group(1).rpartition('.')
            try: return getattr(importlib.import_module(mod), cls)
            except Exception as e: print(f'skip plugin {name}: {type(e).__name__}: {e}', file=sys.stderr)
    args = d / 'args.py'
    if not args.exists(): return None
    try: mod = importlib.import_module(f'axolotl.integrations.{name}.args')
    except Exception as e:
        print(f'skip plugin {name}: {type(e).__name__}: {e}', file=sys.stderr)
        return None
    cands = [v for k, v in vars(mod).items() if k.endswith('Args') and hasattr(v, 'model_fields')]
    return cands[0] if len(cands) == 1 else None


def _dataset_types(root: Path) -> dict[str, list[str]]:
    "Prompt-strategy names Axolotl accepts as `datasets[].type`: `module` (SFT) or `module.function` (dpo/kto/orpo)."
    import ast
    ps = root / 'axolotl' / 'prompt_strategies'
    sft = sorted(f.stem for f in ps.glob('*.py') if not f.stem.startswith('_') and f.stem not in ('base',))
    sft += sorted(d.name for d in ps.iterdir() if d.is_dir() and d.name not in ('dpo', 'kto', 'orpo', '__pycache__'))
    # the older built-in prompters (axolotl/prompt_tokenizers.py), still accepted by name
    sft += ['alpaca', 'jeopardy', 'oasst', 'gpteacher', 'reflection', 'explainchoice', 'concisechoice', 'summarizetldr']
    out = {'sft': sorted(set(sft) - {'jinja_template_analyzer'})}
    for kind in ('dpo', 'kto', 'orpo'):
        names = []
        for f in sorted((ps / kind).glob('*.py')):
            if f.stem == '__init__': continue
            body = ast.parse(f.read_text()).body
            fns = [n.name for n in body if isinstance(n, ast.FunctionDef) and not n.name.startswith('_')]
            names += [f"{f.stem}.{fn}" for fn in fns]
        out[kind] = sorted(names)
    return out


def build(root: Path) -> dict:
    sys.path.insert(0, str(root))
    sys.meta_path.insert(0, _StubFinder())
    cfg = importlib.import_module('axolotl.utils.schemas.config')
    ds = importlib.import_module('axolotl.utils.schemas.datasets')
    trl = importlib.import_module('axolotl.utils.schemas.trl')
    fsdp = importlib.import_module('axolotl.utils.schemas.fsdp')
    plugins = {}
    for p in PLUGINS:
        cls = _plugin_args(root / 'axolotl' / 'integrations' / p, p)
        if cls is not None: plugins[p] = _fields(cls)
    top = _fields(cfg.AxolotlInputConfig)
    dataset_models = [ds.SFTDataset, ds.DPODataset, ds.KTODataset, ds.StepwiseSupervisedDataset, ds.PretrainingDataset]
    values = {k: sorted({str(v) for v in _values(cfg.AxolotlInputConfig.model_fields[k].annotation)})
              for k in VALUE_KEYS if k in cfg.AxolotlInputConfig.model_fields}
    # `optimizer` and `lr_scheduler` are plain strings in Axolotl's schema, checked later against transformers' names
    from transformers.training_args import OptimizerNames, SchedulerType
    values['optimizer'] = sorted(set(values['optimizer']) | {o.value for o in OptimizerNames})
    values['lr_scheduler'] = sorted({s.value for s in SchedulerType} | {'one_cycle', 'rex'})
    values['adapter'] = ['lora', 'qlora', 'llama-adapter']
    values['dataset_type'] = _dataset_types(root)
    return {
        'axolotl_version': VERSION,
        'generated_by': 'scripts/axolotl_registry.py',
        'top': top,
        'datasets': _fields(*dataset_models),
        'trl': _fields(trl.TRLConfig),
        'fsdp_config': _fields(fsdp.FSDPConfig),
        'plugins': plugins,
        'values': values,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--wheel', help='path to axolotl-0.21.0-py3-none-any.whl (default: pip download it)')
    ap.add_argument('--out', default=str(OUT))
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp())
    with zipfile.ZipFile(_wheel(a.wheel)) as z: z.extractall(root)
    reg = build(root)
    Path(a.out).write_text(json.dumps(reg, indent=1, ensure_ascii=False, sort_keys=False) + '\n')
    n = len(reg['top']) + len(reg['datasets']) + len(reg['trl']) + len(reg['fsdp_config'])
    counts = ', '.join(f"{len(reg[s])} {s}" for s in ('top', 'datasets', 'trl', 'fsdp_config'))
    print(f"wrote {a.out}: {n} keys ({counts}) + {sum(map(len, reg['plugins'].values()))} plugin keys")


if __name__ == '__main__': main()
