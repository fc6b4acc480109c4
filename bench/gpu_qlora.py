"""QLoRA on a Llama-3-8B-shaped random-init model: peak GPU memory and real tokens/s, axolotl_nb vs TRL SFTTrainer.

    python bench/gpu_qlora.py --steps 12            # GPU (writes the `gpu_qlora` section of docs/benchmarks.md)
    python bench/gpu_qlora.py --tiny --steps 3      # CPU smoke run of the same code path, tiny shape (no write)
    python bench/gpu_qlora.py --steps 12 --hf-loss-row   # + ours with `chunked_cross_entropy: false` (full logits)

Same model file, same NF4 settings (double quant, bf16 compute), same LoRA (r=16, alpha=32, every linear layer), same
random-token data (log-normal lengths, median ~300, clipped to 2048), micro batch 1 × seq 2048 packed, gradient
checkpointing, both runs in one process. Anchor: torchtune reports 7.4 GiB and 2413 tok/s for Llama-3-8B QLoRA on a
4090.
"""
import gc, json, sys, tempfile, time
from pathlib import Path
import numpy as np, torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench._common import parser, publish  # noqa: E402

def make_model(dest:Path, tiny:bool) -> dict:
    "Write a random-init Llama (8B shape, or tiny) to `dest` in bf16."
    from transformers import LlamaConfig, LlamaForCausalLM
    shape = (dict(hidden_size=64, intermediate_size=224, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=1024)
             if tiny else dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                               num_key_value_heads=8, vocab_size=128256))
    c = LlamaConfig(**shape, max_position_embeddings=8192, rope_theta=500000.0, tie_word_embeddings=False,
                    bos_token_id=1, eos_token_id=2)
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    torch.manual_seed(0)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(dev): m = LlamaForCausalLM(c)
    torch.set_default_dtype(prev)
    m.save_pretrained(dest, max_shard_size='5GB')
    n = sum(p.numel() for p in m.parameters())
    del m
    gc.collect()
    if dev == 'cuda': torch.cuda.empty_cache()
    return dict(shape, params=n)

def make_rows(n:int, vocab:int, seq:int, seed:int=0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    lens = np.clip(rng.lognormal(np.log(300), 0.9, n).astype(int), 16, seq)
    return [rng.integers(3, vocab, l).tolist() for l in lens]

class Meter:
    "Counts real (non-pad) input tokens seen by the model and times steps after a warm-up."
    def __init__(self, model, pad_id:int, warmup:int):
        self.pad, self.warmup, self.tokens, self.t0, self.steps = pad_id, warmup, 0, None, 0
        self.h = model.register_forward_pre_hook(self.hook, with_kwargs=True)
    def hook(self, mod, args, kw):
        if self.t0 is not None and torch.is_grad_enabled():
            ids = kw.get('input_ids', args[0] if args else None)
            self.tokens += int((ids != self.pad).sum())
    def step(self):
        self.steps += 1
        if self.steps == self.warmup:
            if torch.cuda.is_available(): torch.cuda.synchronize()
            self.t0 = time.perf_counter()
    def result(self) -> tuple[float, int]:
        if torch.cuda.is_available(): torch.cuda.synchronize()
        return self.tokens / (time.perf_counter() - self.t0), self.tokens

def callback(meter):
    from transformers import TrainerCallback
    class CB(TrainerCallback):
        def on_step_end(self, args, state, control, **kw): meter.step()
    return CB()

def finish(tr, meter) -> dict:
    "Train, then the run's real tokens/s, peak GPU memory and last logged loss; frees the model."
    tr.add_callback(callback(meter))
    tr.train()
    tps, toks = meter.result()
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float('nan')
    res = dict(tokens_per_s=tps, tokens=toks, peak_gib=peak,
               loss=tr.state.log_history[-2].get('loss') if len(tr.state.log_history) > 1 else None)
    tr.model = None
    del tr
    gc.collect()
    if torch.cuda.is_available(): torch.cuda.empty_cache()
    return res

def base_cfg(model_dir:Path, out:Path, steps:int, tiny:bool, attn:str='sdpa', chunked:bool=True):
    from axolotl_nb.load import load_config
    return load_config(dict(base_model=str(model_dir), datasets=[dict(path='unused.jsonl', type='completion')],
        sequence_len=2048, sample_packing=True, adapter='qlora', load_in_4bit=True, lora_r=16, lora_alpha=32,
        lora_target_linear=True, micro_batch_size=1, gradient_accumulation_steps=1, max_steps=steps, learning_rate=2e-4,
        gradient_checkpointing=True, bf16=not tiny and torch.cuda.is_available(), use_tensorboard=False,
        logging_steps=1,
        save_strategy='no', output_dir=str(out), bnb_4bit_compute_dtype='bfloat16', attn_implementation=attn,
        chunked_cross_entropy=chunked))

def run_ours(cfg, tok, rows, warmup) -> dict:
    import datasets
    from axolotl_nb.models import load_model
    from axolotl_nb.lora import apply_lora
    from axolotl_nb.trainer import build_trainer
    ds = datasets.Dataset.from_dict(dict(input_ids=rows, labels=rows, attention_mask=[[1]*len(r) for r in rows],
                                         length=[len(r) for r in rows]))
    model = apply_lora(load_model(cfg, tok), cfg)
    meter = Meter(model, tok.pad_token_id, warmup)
    if torch.cuda.is_available(): torch.cuda.reset_peak_memory_stats()
    tr = build_trainer(cfg, model, tok, ds, report_to='none', disable_tqdm=True)
    return finish(tr, meter)

def run_trl(cfg, tok, rows, warmup) -> dict:
    import datasets
    from trl import SFTConfig, SFTTrainer
    from axolotl_nb.models import load_model
    from axolotl_nb.lora import lora_config
    ds = datasets.Dataset.from_dict(dict(input_ids=rows))
    model = load_model(cfg, tok)
    meter = Meter(model, tok.pad_token_id, warmup)
    args = SFTConfig(output_dir=cfg.output_dir + '-trl', per_device_train_batch_size=1, gradient_accumulation_steps=1,
                     max_steps=cfg.max_steps, learning_rate=cfg.learning_rate, bf16=cfg.bf16,
                     gradient_checkpointing=True, gradient_checkpointing_kwargs={'use_reentrant': False}, packing=True,
                     max_length=cfg.sequence_len, logging_steps=1, save_strategy='no', report_to='none',
                     disable_tqdm=True, lr_scheduler_type='cosine')
    if torch.cuda.is_available(): torch.cuda.reset_peak_memory_stats()
    tr = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=lora_config(cfg, model))
    return finish(tr, meter)

def main():
    ap = parser(__doc__, steps=12, warmup=2)
    ap.add_argument('--tiny', action='store_true')
    ap.add_argument('--workdir', default=None)
    ap.add_argument('--attn', default='sdpa',
                    help='our attention backend (sdpa: 4D bool mask; flex_attention: BlockMask); TRL always uses sdpa')
    ap.add_argument('--hf-loss-row', action='store_true', help='add ours with `chunked_cross_entropy: false`')
    a = ap.parse_args()
    from axolotl_nb.models import tiny_tokenizer
    work = Path(a.workdir or tempfile.mkdtemp())
    tok = tiny_tokenizer()
    tok.pad_token = '<|endoftext|>'
    t = time.perf_counter()
    shape = make_model(work/'model', a.tiny)
    t_make = time.perf_counter() - t
    rows = make_rows(4000, shape['vocab_size'], 2048)
    cfg = base_cfg(work/'model', work/'out', a.steps, a.tiny)
    res = {'axolotl_nb': run_ours(cfg, tok, rows, a.warmup)}
    if a.attn != 'sdpa':
        cfg_attn = base_cfg(work/'model', work/'out', a.steps, a.tiny, a.attn)
        res[f'axolotl_nb ({a.attn})'] = run_ours(cfg_attn, tok, rows, a.warmup)
    if a.hf_loss_row:
        cfg_hf = base_cfg(work/'model', work/'out', a.steps, a.tiny, chunked=False)
        res['axolotl_nb (HF full-logits loss)'] = run_ours(cfg_hf, tok, rows, a.warmup)
    res['TRL SFTTrainer(packing=True)'] = run_trl(cfg, tok, rows, a.warmup)
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'
    print(json.dumps(dict(device=dev, shape=shape, make_model_s=t_make, results=res), indent=1))
    if a.tiny or a.no_write: return
    ours = res['axolotl_nb']
    lines = [f"Command: `python bench/gpu_qlora.py --steps {a.steps}` on {dev}, torch {torch.__version__}, "
             "one process, both rows in the same run.",
             f"Model: random-init Llama-3-8B shape ({shape['params']/1e9:.2f} B params: hidden 4096, 32 layers, "
             "GQA 32/8, vocab 128256), NF4 + double quant, bf16 compute, LoRA r=16 α=32 on every linear layer, "
             "seq 2048 packed, micro batch 1, gradient checkpointing, sdpa "
             "(flash-attn is not installed on the lent machine). Tokens/s counts real (non-pad) tokens after "
             f"{a.warmup} warm-up steps.", "",
             "| trainer | real tokens/s | peak GPU memory (GiB) | ours ÷ this (tok/s) |", "|---|---|---|---|"]
    for k, r in res.items():
        ratio = ours['tokens_per_s'] / r['tokens_per_s']
        lines.append(f"| {k} | {r['tokens_per_s']:,.0f} | {r['peak_gib']:.2f} | {ratio:.2f}x |")
    lines += ["", "Anchor (not measured here): torchtune reports 7.4 GiB and 2,413 tok/s for Llama-3-8B QLoRA on an "
              "RTX 4090."]
    title = '## QLoRA on a Llama-3-8B-shaped model (GPU, `bench/gpu_qlora.py`)\n\n'
    publish('gpu_qlora', title + '\n'.join(lines), not a.no_write)

if __name__ == '__main__': main()
