"The parity benchmark's data generator and comparison logic (bench/axolotl_parity.py), without Axolotl."

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'bench'))
import axolotl_parity as P  # noqa: E402

IG = P.IGNORE


def test_cases_are_deterministic_and_cover_the_edges():
    a, b = P.cases(seed=0), P.cases(seed=0)
    assert a == b and P.cases(seed=1) != a
    names = [c['name'] for c in a]
    assert len(names) == len(set(names))
    for want in (
        'alpaca',
        'completion',
        'input_output',
        'train_on_inputs',
        'drop_system_message',
        'message_field_training: training',
        'sharegpt field/role mappings',
        'roles mapping',
        'chat_template tools',
    ):
        assert want in names, want
    assert {f'train_on_eos {e}' for e in ('all', 'turn', 'last', 'none')} <= set(names)
    conv = P.conversations(n=40, seed=0, tools=True, training_flags=True)
    msgs = [m for r in conv for m in r['messages']]
    assert any(m['content'].endswith('\n') for m in msgs) and any(m['content'].startswith(' ') for m in msgs)  # edges
    assert any(r['messages'][-1]['role'] == 'user' for r in conv)  # ends on a user turn
    assert any(m['role'] == 'tool' for m in msgs) and any(m['role'] == 'system' for m in msgs)
    assert any('training' in m for m in msgs)
    sg = P.sharegpt(conv[:2])
    assert set(sg[0]['conversations'][0]) == {'from', 'value'} and sg[0]['conversations'][0]['from'] in (
        'human',
        'system',
    )


def test_compare_counts_and_first_difference():
    row = lambda ids, labs: {'input_ids': ids, 'labels': labs}
    ours = [row([1, 2, 3], [IG, 2, 3]), row([4, 5], [IG, 5]), row([6], [6])]
    r = P.compare(ours, [dict(x) for x in ours])
    assert r['identical'] and r['same_labels'] == 3 and r['trained'] == (4, 4) and r['first_diff'] is None
    theirs = [row([1, 2, 3], [IG, 2, 3]), row([4, 5], [4, 5]), row([7], [7])]
    r = P.compare(ours, theirs)
    assert not r['identical'] and r['first_diff'] == 1
    assert (r['same_ids'], r['same_labels'], r['trained']) == (2, 1, (4, 5))
    r = P.compare(ours, ours[:2])  # a dropped row is a difference too
    assert not r['identical'] and r['first_diff'] == 2 and r['rows'] == (3, 2)


def test_mark_brackets_trained_spans():
    dec = lambda ids: ''.join(chr(96 + i) for i in ids)
    assert P.mark(dec, [1, 2, 3, 4, 5], [IG, 2, 3, IG, 5]) == 'a[bc]d[e]'
    assert P.mark(dec, [1, 2], [IG, IG]) == 'ab'
    assert 'labels differ' in P.explain(
        dec, {'input_ids': [1, 2], 'labels': [IG, 2]}, {'input_ids': [1, 2], 'labels': [1, 2]}
    )
    assert 'input_ids differ' in P.explain(dec, {'input_ids': [1], 'labels': [1]}, {'input_ids': [2], 'labels': [2]})


@pytest.fixture(scope='module')
def tok_dir(tmp_path_factory):
    return P.tokenizer_dir(tmp_path_factory.mktemp('tok'))


def test_case_config_is_valid_for_us_and_rows_line_up(tmp_path, tok_dir):
    "The YAML written for both sides passes our validation, and our side yields one row per input row."
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    for c in P.cases():
        if c['name'] not in ('alpaca:chatml', 'train_on_eos last', 'sharegpt field/role mappings'):
            continue
        p = P.write_case(
            {**c, 'rows': c['rows'][:5]}, tmp_path / c['name'].replace(' ', '_').replace(':', '_'), tok_dir
        )
        rows = P.ours(p, tok)
        assert len(rows) == 5 and all(len(r['input_ids']) == len(r['labels']) > 0 for r in rows)
        assert all(any(x != IG for x in r['labels']) for r in rows)


def test_every_named_template_has_a_case():
    from axolotl_nb.keys import CHAT_TEMPLATE_NAMES

    named = {c['ds']['chat_template'] for c in P.cases() if c['name'].startswith('named ')}
    assert named == set(CHAT_TEMPLATE_NAMES) - {'tokenizer_default', 'jinja'}
    assert next(c for c in P.cases() if c['name'] == 'named gemma')['ds']['drop_system_message'] is True
