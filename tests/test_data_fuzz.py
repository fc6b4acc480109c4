"Data fuzzing: a malformed data file gives a DataError naming file (and line), or loads; nothing cached on failure."

import json

import pytest

datasets = pytest.importorskip('datasets')
datasets.disable_progress_bars()
from axolotl_nb.data import load_datasets  # noqa: E402
from axolotl_nb.models import tiny_tokenizer  # noqa: E402
from axolotl_nb.prompts import DataError  # noqa: E402
from axolotl_nb.load import load_config  # noqa: E402
from toys import cached, prep_cfg  # noqa: E402

GOOD = [{'instruction': f'Say {i}', 'output': f'{i}'} for i in range(5)]
CONV = [
    {'messages': [{'role': 'user', 'content': f'q{i}'}, {'role': 'assistant', 'content': f'a{i}'}]} for i in range(5)
]


def jl(rows) -> bytes:
    return ''.join(json.dumps(r) + '\n' for r in rows).encode()


CASES = {  # name: (file bytes, dataset type, file suffix, 'error' text or None for a clean load)
    'truncated json': (jl(GOOD)[:-9], 'alpaca', '.jsonl', ':5: invalid JSON'),
    'truncated json array': (json.dumps(GOOD).encode()[:-5], 'alpaca', '.json', ':1: invalid JSON'),
    'NUL byte in a line': (
        jl(GOOD[:2]) + b'{"instruction": "x\x00", "output": "y"}\n',
        'alpaca',
        '.jsonl',
        ':3: invalid JSON',
    ),
    'escaped NUL loads': (jl(GOOD[:2] + [{'instruction': 'x\x00', 'output': 'y'}]), 'alpaca', '.jsonl', None),
    'BOM jsonl loads': (b'\xef\xbb\xbf' + jl(GOOD), 'alpaca', '.jsonl', None),
    'BOM csv loads': (b'\xef\xbb\xbfinstruction,output\nhi,1\nyo,2\n', 'alpaca', '.csv', None),
    'non-UTF-8 byte': (
        jl(GOOD[:3]) + b'{"instruction": "caf\xe9", "output": "y"}\n',
        'alpaca',
        '.jsonl',
        ':4: byte 0xe9',
    ),
    'empty file': (b'', 'alpaca', '.jsonl', 'empty file'),
    'messages not a list': (
        jl(CONV[:2] + [{'messages': {'role': 'user', 'content': 'x'}}]),
        'chat_template',
        '.jsonl',
        ':3: example 2: field `messages` must be a list',
    ),
    'message not a mapping': (
        jl(CONV[:2] + [{'messages': [['user', 'x']]}]),
        'chat_template',
        '.jsonl',
        'must be a mapping',
    ),
    'content nested wrongly': (
        jl(CONV[:1] + [{'messages': [{'role': 'user', 'content': {'text': 'x'}}]}]),
        'chat_template',
        '.jsonl',
        ':2: example 1: `messages[0].content` must be a string',
    ),
    'mixed column types': (
        jl(GOOD[:2] + [{'instruction': 3, 'output': 'y'}]),
        'alpaca',
        '.jsonl',
        ':3: example 2: field `instruction` must be a string',
    ),
    'row not an object': (jl(GOOD[:2]) + b'[1, 2]\n', 'alpaca', '.jsonl', ':3: each row must be a JSON object'),
}


@pytest.fixture(scope='module')
def tok():
    return tiny_tokenizer()


@pytest.mark.parametrize('name', list(CASES))
def test_bad_data_names_file_and_line_or_loads(tmp_path, tok, name):
    data, typ, suffix, err = CASES[name]
    f = tmp_path / f'data{suffix}'
    f.write_bytes(data)
    cfg = load_config(prep_cfg(tmp_path, [dict(path=str(f), type=typ)], sequence_len=512))
    if err is None:
        train, _, rep = load_datasets(cfg, tok)
        assert len(train) >= 2
        return
    with pytest.raises(DataError) as e:
        load_datasets(cfg, tok)
    msg = str(e.value)
    assert str(f) in msg and err in msg, msg
    assert cached(tmp_path / 'prepared') == [], cached(tmp_path / 'prepared')  # nothing cached, no temp dir


def test_a_50mb_single_line_loads(tmp_path, tok):
    f = tmp_path / 'big.jsonl'
    f.write_text(json.dumps({'instruction': 'x', 'output': 'y', 'pad': 'z' * (50 << 20)}) + '\n' + jl(GOOD).decode())
    cfg = load_config(prep_cfg(tmp_path, [dict(path=str(f), type='alpaca')], sequence_len=512))
    train, _, _ = load_datasets(cfg, tok)
    assert len(train) == 6
