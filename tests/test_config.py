"Config surface vs Axolotl 0.21's own key list: nothing real is 'unknown', off values are silent, each class behaves."
import json
from pathlib import Path

import pytest, yaml

from axolotl_nb import keys, prepare
from axolotl_nb.config import AxolotlConfig, ConfigError, UserError
from axolotl_nb.keys import CHAT_TEMPLATE_NAMES, SECTIONS, axolotl_keys, config_keys, key_class, suggest
from axolotl_nb.prepare import parse_overrides
from axolotl_nb.load import load_config, problems_of

ROOT = Path(__file__).resolve().parent.parent
BASE = dict(base_model='m', datasets=[dict(path='d.jsonl', type='alpaca')], micro_batch_size=1)
UNKNOWN = 'is not a config key'


def _place(section, key, value) -> dict:
    "BASE with `key: value` put where `section` says."
    if section == 'top': return {**BASE, key: value}
    if section == 'datasets': return {**BASE, 'datasets': [{**BASE['datasets'][0], key: value}]}
    if section == 'trl': return {**BASE, 'trl': {key: value}}
    return {**BASE, 'fsdp_version': 2, 'fsdp_config': {key: value}}


def _off(meta: dict):
    "An off value for a registry key: its Axolotl default, else false / empty by type."
    if meta.get('default') is not None: return meta['default']
    t = meta.get('type', '')
    return False if 'bool' in t else [] if t.startswith('list') else {} if 'dict' in t else 0 if 'int' in t else ''


def _on(meta: dict):
    t = meta.get('type', '')
    return True if 'bool' in t else 3 if 'int' in t else ['x'] if t.startswith('list') else 'x'


def _vendored(section) -> dict:
    "The vendored key list itself (not through config's lookup), plugins' keys joining the top level."
    reg = json.loads((ROOT/'axolotl_nb'/'axolotl_keys.json').read_text())
    d = dict(reg[section])
    if section == 'top':
        for keys in reg['plugins'].values(): d = {**keys, **d}
    return d


@pytest.mark.parametrize('section', SECTIONS)
def test_no_real_axolotl_key_is_unknown(section):
    "Every key of Axolotl 0.21's schema (+ plugins), switched on, is classified: never reported as a typo."
    wrong = {}
    for k, meta in _vendored(section).items():
        if k in ('base_model', 'datasets', 'path'): continue
        ps = problems_of(_place(section, k, _on(meta)))
        bad = [p for p in ps if UNKNOWN in p and p.split(':')[0].split('.')[-1] == k]
        if bad: wrong[k] = bad
    assert not wrong, wrong


@pytest.mark.parametrize('section', ['top', 'datasets', 'trl'])
def test_every_unimplemented_key_at_its_off_value_validates(section):
    "Class 2 (and 3/4): an Axolotl key we do not implement, at its off value, is accepted silently."
    noisy = {}
    for k, meta in _vendored(section).items():
        if key_class(k, section) == 'supported': continue
        try: c = load_config(_place(section, k, _off(meta)))
        except ConfigError as e:
            noisy[k] = [str(p) for p in e.problems]
            continue
        ws = [n for n in c.notes if n.startswith('warning') and k in n]
        if ws: noisy[k] = ws
    assert not noisy, noisy


def test_registry_counts_and_plugins():
    assert keys.AXOLOTL['axolotl_version'] == '0.21.0'
    assert len(axolotl_keys('top')) > 450 and len(axolotl_keys('datasets')) >= 40 and len(axolotl_keys('trl')) >= 60
    for k in ('liger_rms_norm', 'cut_cross_entropy', 'use_scattermoe', 'kd_alpha', 'lm_eval_tasks'):
        assert k in axolotl_keys('top'), k


# --- the four classes, each with a passing and a failing case
def test_class_toggle_warns_and_strict_makes_it_an_error():
    c = load_config({**BASE, 'use_kernels': True})
    assert any(n.startswith('warning: use_kernels:') and 'run instead' in n for n in c.notes)
    ps = problems_of({**BASE, 'use_kernels': True, 'strict': True})
    assert len(ps) == 1 and ps[0].startswith('use_kernels:') and 'strict: true' in ps[0]
    assert not [n for n in load_config({**BASE, 'use_kernels': False}).notes if 'kernel' in n]


def test_class_unsupported_errors_only_when_active():
    for k, on in [('relora', True), ('qat', {'weight_dtype': 'int8'}), ('context_parallel_size', 2),
                  ('lisa_n_layers', 2), ('rl', 'ebft'), ('optimizer', 'dion')]:
        ps = problems_of({**BASE, k: on})
        assert len(ps) == 1 and ps[0].startswith(f'{k}: not supported yet'), (k, ps)
    for k, off in [('relora', False), ('qat', None), ('context_parallel_size', 1), ('lisa_n_layers', None)]:
        assert problems_of({**BASE, k: off}) == [], k
    assert 'closest in axolotl_nb: QLoRA' in problems_of({**BASE, 'qat': {'weight_dtype': 'int8'}})[0]


def test_class_inert_active_names_the_feature():
    assert problems_of({**BASE, 'model_kwargs': {}}) == []
    ps = problems_of({**BASE, 'model_kwargs': {'rope_theta': 1e6}})
    assert ps[0].startswith('model_kwargs: not supported yet')


def test_known_values_are_classified_not_generic():
    for k, v in [('rl', 'gdpo'), ('optimizer', 'dion'), ('attn_implementation', 'kernels-community/flash-attn3'),
                 ('lr_scheduler', 'rex')]:
        p = problems_of({**BASE, k: v})
        assert len(p) == 1 and f'not supported yet: `{k}: {v}`' in p[0] and 'Input should be' not in p[0], p
    c = load_config({**BASE, 'gradient_checkpointing': 'offload_disk', 'attn_implementation': 'packed_sdpa'})
    assert c.gradient_checkpointing == 'offload' and c.attn_implementation == 'packed_sdpa'
    assert any('gradient_checkpointing: offload_disk' in n for n in c.notes)
    assert load_config({**BASE, 'gradient_checkpointing': 'offload'}).notes == load_config(BASE).notes  # supported
    assert 'did you mean `dpo`' in problems_of({**BASE, 'rl': 'dop'})[0]
    assert problems_of({**BASE, 'chat_template': 'cohere'}) == []  # every Axolotl 0.21 template name is served


# --- suggestions
@pytest.mark.parametrize('key,wrong', [('eot_tokens', 'tokens'),
                                       ('gradient_checkpointing_kwargs', 'gradient_checkpointing'),
                                       ('model_config', 'base_model_config'), ('use_kernels', 'use_wandb'),
                                       ('save_only_model', 'base_model'), ('reward_model', 'wandb_mode'),
                                       ('num_labels', 'num_epochs')])
def test_no_suggestion_with_another_meaning(key, wrong):
    assert suggest(key, AxolotlConfig.model_fields) != wrong
    assert not any(f'did you mean `{wrong}`' in p for p in problems_of({**BASE, key: True}))


def test_real_typos_and_aliases_suggested():
    assert suggest('lora_rank', AxolotlConfig.model_fields) == 'lora_r'
    assert suggest('adam_eps', AxolotlConfig.model_fields) == 'adam_epsilon'
    assert 'did you mean `learning_rate`' in problems_of({**BASE, 'learnign_rate': 1e-4})[0]
    p = problems_of({**BASE, 'totally_made_up': 1})[0]
    assert 'did you mean' not in p and 'axolotl-nb config-keys' in p and 'Axolotl drops them silently' in p


def test_config_keys_lists_classes():
    out = config_keys('liger_*')
    assert 'liger_swiglu' in out and 'toggle' in out and 'liger_rope' in out
    assert 'supported' in config_keys('lora_r') and 'LoRA rank' in config_keys('lora_r')
    assert config_keys('zz_nothing').startswith('no config key')


# --- rules that agree with Axolotl
def test_rules_agree_with_axolotl():
    assert problems_of({**BASE, 'val_set_size': 0, 'evals_per_epoch': 4}) == []
    assert problems_of({**BASE, 'eval_steps': 10})[0].startswith('eval_steps:')
    c = load_config({**BASE, 'evals_per_epoch': 0, 'saves_per_epoch': 0})
    assert (c.eval_strategy, c.save_strategy) == ('no', 'no')
    c = load_config({**BASE, 'lora_r': 16})
    assert any(n.startswith('warning: lora_r:') for n in c.notes)
    pref_ds = [dict(path='p.jsonl', type='chat_template.default', field_chosen='c')]
    assert problems_of({**BASE, 'rl': 'ebft', 'trl': {'num_generations': 4}, 'datasets': pref_ds}) == [
        'rl: not supported yet: `rl: ebft` (an Axolotl value) — fix: use one of dpo, ipo, orpo, kto, simpo, grpo']
    ps = problems_of({**BASE, 'trl': {'bogus': 1}})
    assert len(ps) == 1 and 'Extra inputs' not in ps[0]
    assert 'warmup_ratio' in problems_of({**BASE, 'warmup_steps': 0.1})[0]


def test_one_fsdp_answer_and_quant_storage(monkeypatch):
    assert not AxolotlConfig(base_model='m', fsdp=False, fsdp_config={'offload_params': True}).uses_fsdp
    assert AxolotlConfig(base_model='m', fsdp_version=2).uses_fsdp
    monkeypatch.setattr(prepare, '_cuda', lambda: True)
    fq = {**BASE, 'adapter': 'qlora', 'load_in_4bit': True, 'fsdp_version': 2}
    got = [load_config({**fq, **p}).bnb_4bit_quant_storage
           for p in ({'bf16': True}, {'bf16': False, 'fp16': True}, {'bf16': False})]
    assert got == ['bfloat16', 'float16', 'float32']


# --- validate-time checks
def test_paths_splits_templates(tmp_path):
    (tmp_path/'ok.jsonl').write_text('{}\n')
    cfg = {**BASE, 'chat_template': 'nope_tpl', 'datasets': [
        dict(path='ok.jsonl', type='alpaca', split='train[:10%]'), dict(path='missing.jsonl', type='alpaca'),
        dict(path='ok.jsonl', type='alpaca', split='train[:abc]'), dict(path='org/hub_name', type='alpaca')]}
    (tmp_path/'c.yml').write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as e: load_config(tmp_path/'c.yml')
    paths = sorted(p.path for p in e.value.problems)
    assert paths == ['chat_template', 'datasets[1].path', 'datasets[2].split'], e.value


def test_chat_template_names_match_prompts():
    from axolotl_nb.templates import CHAT_TEMPLATES
    assert set(CHAT_TEMPLATES) <= set(CHAT_TEMPLATE_NAMES), set(CHAT_TEMPLATES) - set(CHAT_TEMPLATE_NAMES)


def test_override_without_value_is_an_error():
    with pytest.raises(UserError, match='--learning_rate has no value'): parse_overrides(['--learning_rate'])
    assert parse_overrides(['--sample_packing']) == {'sample_packing': True}


@pytest.mark.parametrize('path', sorted((ROOT/'examples').glob('axolotl_*.yml')), ids=lambda p: p.name)
def test_axolotl_style_examples(path):
    c = load_config(path)
    warns = [n for n in c.notes if n.startswith('warning') and 'CUDA' not in n]
    if 'toggles' in path.name:
        assert len(warns) >= 4, warns
        with pytest.raises(ConfigError, match='strict: true'): load_config(path, ['--strict', 'true'])
    else: assert warns == [], warns


def test_not_supported_config_fails_naming_each_feature():
    raw = yaml.safe_load((ROOT/'examples'/'axolotl_inert_keys.yml').read_text())
    raw |= {'relora': True, 'lisa_n_layers': 2, 'context_parallel_size': 2, 'qat': {'x': 1}}
    raw['datasets'][0]['path'] = str(ROOT/'examples'/'data'/'alpaca_sample.jsonl')
    ps = problems_of(raw)
    assert sorted(p.split(':')[0] for p in ps) == ['context_parallel_size', 'lisa_n_layers', 'qat', 'relora'], ps
    assert all('not supported yet' in p for p in ps)
