"Config fuzzing: mutated valid configs and random YAML never give a traceback or a hang — `validate` exits 0 or 2."
import contextlib, io, math, os, random, signal
from pathlib import Path

import pytest, yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from axolotl_nb.cli import main
from axolotl_nb.config import ConfigError
from axolotl_nb.load import load_config

ROOT = Path(__file__).resolve().parent.parent
SEEDS = [yaml.safe_load(p.read_text()) for p in sorted((ROOT/'examples').glob('*.yml'))]
SEEDS.append({  # Axolotl-style: the shape of its published examples (plugins, kernels, blank keys, fsdp block)
    'base_model': 'm', 'plugins': ['axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin'],
    'datasets': [{'path': 'data/sharegpt_sample.jsonl', 'type': 'chat_template', 'field_messages': 'conversations',
                  'message_property_mappings': {'role': 'from', 'content': 'value'}}],
    'chat_template': 'chatml', 'val_set_size': 0, 'evals_per_epoch': 4, 'saves_per_epoch': 1, 'sequence_len': 512,
    'sample_packing': True, 'micro_batch_size': 2, 'gradient_accumulation_steps': 2, 'adapter': 'qlora',
    'load_in_4bit': True, 'lora_r': 16, 'lora_alpha': 32, 'lora_target_linear': True, 'lora_mlp_kernel': True,
    'gradient_checkpointing': True, 'gradient_checkpointing_kwargs': {'use_reentrant': False}, 'fsdp_version': 2,
    'fsdp_config': {'offload_params': False, 'state_dict_type': 'FULL_STATE_DICT'}, 'warmup_ratio': 0.1,
    'optimizer': 'adamw_torch_fused', 'lr_scheduler': 'cosine', 'learning_rate': 2e-4, 'bf16': 'auto', 'tf32': False,
    'special_tokens': None, 'wandb_project': None, 'xformers_attention': None,
    'liger_rms_norm': True})
KEYS = sorted({k for s in SEEDS for k in s} | {'trl', 'rl', 'deepspeed', 'test_datasets', 'strict', 'eot_tokens'})

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.sampled_from([0, 1, -1, 10**300]),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
                    st.sampled_from(['', 'no', 'yes', 'auto', '~', '1e3', 'pkg://x/y', 'data/../../etc/passwd',
                                     '日本語', '\x00', 'train[:abc]', 'dpo', 'grpo', 'ebft', 'jinja', 'qlora',
                                     'offload', '🦎' * 50]))
values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=3),
                                                   st.dictionaries(st.text(max_size=8), c, max_size=3)), max_leaves=6)
keys = st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=20))


@st.composite
def mutated(draw):
    "A seed config with a few mutations: drop, retype, wrong nesting, unicode / huge values, dataset-entry edits."
    d = dict(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op, k = draw(st.sampled_from(['drop', 'set', 'nest', 'list', 'ds'])), draw(keys)
        if op == 'drop' and d: d.pop(draw(st.sampled_from(sorted(d, key=str))), None)
        elif op == 'set': d[k] = draw(values)
        elif op == 'nest' and k in d: d[k] = {k: d[k]}
        elif op == 'list' and k in d: d[k] = [d[k]]
        elif op == 'ds':
            ds = d.get('datasets')
            e = dict(ds[0]) if isinstance(ds, list) and ds and isinstance(ds[0], dict) else {}
            k = draw(st.sampled_from(['path', 'type', 'split', 'chat_template', 'field_messages', 'roles', draw(keys)]))
            e[k] = draw(values)
            d['datasets'] = draw(st.sampled_from([[e], e, [e, 'x'], []]))
    return d


class Hang(Exception): pass


def _alarm(*_): raise Hang('load_config took more than 10 s')


def _check(path: Path):
    "load_config either succeeds or raises ConfigError (exit code 2) whose problems all say something."
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(10)
    try: load_config(path)
    except ConfigError as e:
        assert e.exit_code == 2 and e.problems and all(p.path and p.msg for p in e.problems), e
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope='module')
def cfgdir(tmp_path_factory):
    d = tmp_path_factory.mktemp('fuzz')
    (d/'data').symlink_to(ROOT/'examples'/'data')
    return d


def _dump(d) -> str:
    try: return yaml.safe_dump(d, allow_unicode=True, sort_keys=False)
    except (yaml.YAMLError, ValueError, RecursionError): return 'base_model: m\n'


FUZZ = settings(derandomize=True, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


N = int(os.environ.get('AXOLOTL_NB_FUZZ', 2000))  # cases per test; CI default sized to run in well under a minute


@settings(FUZZ, max_examples=N)
@given(d=mutated())
def test_mutated_configs_never_crash(d, cfgdir):
    p = cfgdir/'c.yml'
    p.write_text(_dump(d), encoding='utf-8')
    _check(p)


LINES = ['base_model: m', 'datasets:', '  - path: data/alpaca_sample.jsonl', '    type: alpaca', 'micro_batch_size: 2',
         '- a', 'a: [1, 2', '{', '&a x', '*a', '!!python/object:os.system', 'trl:', '  beta: .inf', 'key: "\\x00"',
         '? [a, b]', ': 1', '\t', 'rl: dpo', 'lora_r: 1e400', '---', '...', 'x: ' + 'y' * 500, '%TAG ! x', 'seed: 0x1F',
         'a: &x [*x]', 'lora_r: 99999999999999999999999999', 'learning_rate: -.nan', '\ufeffbase_model: m']
yaml_text = st.one_of(st.text(max_size=200),
                      st.lists(st.sampled_from(LINES), max_size=12)
                      .map('\n'.join))


@settings(FUZZ, max_examples=N * 2 // 3)
@given(text=yaml_text)
def test_random_yaml_never_crashes(text, cfgdir):
    p = cfgdir/'r.yml'
    p.write_text(text, encoding='utf-8', errors='surrogatepass')
    _check(p)


def test_cli_validate_exits_0_or_2(cfgdir):
    "The command users run: exit 0 or 2 and no traceback, on a sample of the same mutations."
    codes, rng = [], random.Random(0)
    for i in range(60):
        d = dict(rng.choice(SEEDS))
        k = rng.choice(KEYS)
        d[k] = rng.choice([None, True, -1, 10**40, math.inf, 'x', [], {'a': {'b': 1}}, '日本語', 'ebft'])
        p = cfgdir/f'cli{i}.yml'
        p.write_text(_dump(d), encoding='utf-8')
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            try: rc = main(['validate', str(p)])
            except SystemExit as e: rc = e.code
        assert rc in (0, 2) and 'Traceback' not in err.getvalue(), (d, rc, err.getvalue())
        codes.append(rc)
    assert {0, 2} <= set(codes)
