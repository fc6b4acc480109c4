"""`pretraining_dataset`: a local JSONL streamed into full `sequence_len` rows (read lazily, every token once, in
order), document boundaries isolate documents in attention, validate's errors, the Hub offline, and a short
`axolotl-nb train` of a tiny random model on the stream."""
import contextlib, io, itertools, json
from pathlib import Path

import pytest
import torch

from axolotl_nb.attention import PackedCollator, causal_lm_loss_sum
from axolotl_nb.cli import main
from axolotl_nb.config import ConfigError
from axolotl_nb.models import load_model, load_tokenizer
from axolotl_nb.prompts import DataError
from axolotl_nb.load import load_config
from axolotl_nb.run import preprocess
from axolotl_nb.streaming import PretrainStream, doc_tokens, stream_data
from axolotl_nb.trainer import build_trainer
from toys import REPEAT_WORDS, logged_losses, tiny_work, write_yaml

ROOT = Path(__file__).resolve().parent.parent


def docs(n: int) -> list[dict]:
    "`n` documents of 1-40 words (deterministic)."
    w = REPEAT_WORDS
    return [{'text': ' '.join(w[(i * 3 + j) % len(w)] for j in range(1 + (i * 7) % 40))} for i in range(n)]


@pytest.fixture(scope='module')
def work(tmp_path_factory) -> Path:
    return tiny_work(tmp_path_factory.mktemp('pretrain'), {'docs.jsonl': docs(3000)}, hidden_size=32, num_layers=1)


def raw(d: Path, **kw) -> dict:
    return dict(base_model=str(d/'tiny'), pretraining_dataset=[dict(path=str(d/'docs.jsonl'))], sequence_len=64,
             micro_batch_size=2, gradient_accumulation_steps=1, max_steps=3, shuffle_merged_datasets=False,
             learning_rate=1e-3, logging_steps=1, save_steps=3, output_dir=str(d/'out'), use_tensorboard=False,
             seed=0, adapter=None) | kw


def cfg_for(d: Path, **kw): return load_config(raw(d, **kw))


def cfg_tok(d: Path, **kw) -> tuple:
    "The loaded config and its tokenizer."
    cfg = cfg_for(d, **kw)
    return cfg, load_tokenizer(cfg)


def doc_stream(tok) -> list[int]:
    "The tokens of all 3000 documents (EOS after each), in order."
    return [t for d in doc_tokens(docs(3000), tok) for t in d]


def row_tokens(rows) -> list[int]:
    "The tokens of stream rows (each a list of pieces), in order."
    return [t for r in rows for p in r for t in p['input_ids']]


def test_rows_full_in_order_and_lazy(work):
    "Every row holds exactly sequence_len tokens, the tokens are the documents' (EOS after each) in order, read lazily."
    cfg, tok = cfg_tok(work)
    ps = PretrainStream(cfg, tok, batch_size=128)
    head = list(itertools.islice(ps, 4))
    assert ps.docs_read <= 128, ps.docs_read  # 4 rows took one tokenizer batch of the 3000 documents
    rows = list(ps)
    lens = [sum(len(p['input_ids']) for p in r) for r in rows]
    assert set(lens[:-1]) == {64} and 0 < lens[-1] <= 64, lens[-3:]
    want = doc_stream(tok)
    assert row_tokens(rows) == want
    assert head == rows[:4]
    assert len(rows) == -(-len(want) // 64)


def test_shuffled_stream_keeps_every_document(work):
    "shuffle_merged_datasets reorders documents (buffered) but drops none."
    cfg, tok = cfg_tok(work, shuffle_merged_datasets=True)
    got, want = row_tokens(PretrainStream(cfg, tok, shuffle_buffer=500)), doc_stream(tok)
    assert got != want and sorted(got) == sorted(want)


def test_document_boundaries_isolate_documents(work):
    "A packed stream batch's loss equals the token-weighted loss of its document pieces, each run alone."
    cfg, tok = cfg_tok(work)
    model = load_model(cfg, tok, for_training=False).eval()
    coll = PackedCollator('sdpa', pad_token_id=0)
    rows = list(itertools.islice(PretrainStream(cfg, tok), 2))
    assert max(len(r) for r in rows) > 1  # the rows do pack several documents
    with torch.no_grad():
        loss, n = causal_lm_loss_sum(model, coll(rows))
        alone = [causal_lm_loss_sum(model, coll([[p]])) for r in rows for p in r]
    assert n == sum(k for _, k in alone)
    torch.testing.assert_close(loss, sum(li for li, _ in alone), rtol=1e-5, atol=1e-4)
    b = coll(rows)  # control: the same rows with positions that do not restart (one causal document per row)
    b['position_ids'] = torch.arange(b['input_ids'].shape[1]).expand_as(b['input_ids'])
    b['attention_mask'] = PackedCollator('sdpa')([[{'input_ids': [1] * 64}]] * len(rows))['attention_mask']
    with torch.no_grad():
        assert abs(causal_lm_loss_sum(model, b)[0] - loss) > 1e-2


def test_trainer_gets_no_sampler(work):
    "The run path's train split is the stream: batches of micro_batch_size full rows with restarting positions."
    cfg, tok = cfg_tok(work)
    train, ev, rep = stream_data(cfg, tok)
    tr = build_trainer(cfg, load_model(cfg, tok), tok, train, ev, report_to='none')
    b = next(iter(tr.get_train_dataloader()))
    assert b['input_ids'].shape == (2, 64)
    assert int((b['position_ids'] == 0).sum()) > 2  # several documents per row


def test_validate_errors(work, tmp_path):
    "A stream has no length: max_steps is required (named); datasets/val_set_size next to it are rejected."
    with pytest.raises(ConfigError, match='max_steps.*stream'):
        cfg_for(work, max_steps=None)
    with pytest.raises(ConfigError, match='datasets'):
        cfg_for(work, datasets=[dict(path=str(work/'docs.jsonl'), type='completion')])
    with pytest.raises(ConfigError, match='val_set_size'):
        cfg_for(work, val_set_size=0.1)
    with pytest.raises(ConfigError, match='text_colum'):
        cfg_for(work, pretraining_dataset=[dict(path='x.jsonl', text_colum='body')])


def test_bad_column_and_offline_hub(work, monkeypatch):
    "A missing text column names the file, document and columns; an uncached Hub dataset offline says so."
    cfg = cfg_for(work, pretraining_dataset=[dict(path=str(work/'docs.jsonl'), text_column='body')])
    with pytest.raises(DataError, match=r'docs.jsonl: document 0: `body` must be a string.*columns: text'):
        next(iter(PretrainStream(cfg, load_tokenizer(cfg))))
    monkeypatch.setenv('HF_DATASETS_OFFLINE', '1')
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    cfg = cfg_for(work, pretraining_dataset=[dict(path='no-such-org/no-such-corpus')])
    with pytest.raises(DataError, match='no-such-org/no-such-corpus.*offline mode'):
        next(iter(PretrainStream(cfg, load_tokenizer(cfg))))


def test_cli_train_on_stream(work):
    "`axolotl-nb train` of a tiny random model on the stream: exit 0, max_steps steps, a loss logged at every step."
    p = write_yaml(work/'train.yml', raw(work))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(['train', str(p)])
    assert rc == 0, err.getvalue()[-2000:]
    losses = logged_losses(work/'out', 3)
    assert sorted(losses) == [1, 2, 3] and all(0 < v < 20 for v in losses.values()), losses
    s = json.loads((work/'out'/'training_summary.json').read_text())
    assert s['steps'] == 3 and s['tokens'] == 3 * 2 * 64, s


def test_example_validates(capsys):
    "examples/pretraining.yml validates (its shipped documents file exists)."
    rc = main(['validate', str(ROOT/'examples'/'pretraining.yml')])
    assert rc == 0, capsys.readouterr().err


def test_preprocess_rehearses_the_stream(work):
    "`preprocess` caches nothing for a stream: it reads the first rows training takes and reports them."
    rep = preprocess(cfg_for(work), debug=1)
    assert rep.n_train == 1000 and rep.total_tokens == 1000 * 64 and rep.packed_efficiency == 1.0
    assert rep.datasets[0]['rows_in'] < 3000 and not rep.cache_path
    assert '--- example 0 (64 tokens' in rep.debug and 'Datasets:' in str(rep)
