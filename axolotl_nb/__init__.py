"""YAML-driven LLM fine-tuning (SFT, LoRA/QLoRA, DPO/ORPO/KTO/SimPO/GRPO, FSDP) written notebook-first with nbdev

Modules:

- `axolotl_nb.distributed`: FSDP2 (`fully_shard`) and FSDP + QLoRA on PyTorch's own engine: Axolotl's `fsdp_config` in transformers' terms, the layer to wrap, the CPU patches for accelerate and the checks before the Trainer shards — the same YAML that trains on one process trains across processes, GPUs and nodes.
- `axolotl_nb.harness`: `axolotl-nb lm-eval cfg.yml`: run EleutherAI's lm-evaluation-harness (0.4.x, extra `eval`) on what training produced — the adapter (merged for speed) or the full fine-tune — with the tasks and batch size from the config.
- `axolotl_nb.inference`: Chat with the base model or a trained adapter: one prompt, a file of prompts, a terminal chat, or a gradio UI — with the tokenizer's chat template, streamed tokens, a stop that really stops, and greedy decoding by default.
- `axolotl_nb.launch`: DeepSpeed ZeRO configs (a shipped preset, a JSON file or an inline mapping), the `TrainingArguments` keyword arguments a multi-process run needs, and the torchrun / accelerate launchers — on one node or many.
- `axolotl_nb.lora`: PEFT adapters from the YAML: target modules (names, regex or every linear layer), DoRA, rsLoRA, LoRA+ optimizer groups, k-bit preparation for QLoRA, continuing an adapter — and `merge-lora`.
- `axolotl_nb.loss`: The training loss from the final hidden states and the LM head weight, a chunk of tokens at a time: never the `[tokens × vocab]` logits. Exact against `F.cross_entropy` on the full logits, loss and gradients.
- `axolotl_nb.models`: Load the tokenizer and the model a config names — a Hub id, a local directory or a `.gguf` file — with pad and special tokens, embeddings sized to the tokenizer, config overrides, NF4 / 8-bit quantization, the attention backend and gradient checkpointing.
- `axolotl_nb.optim`: Every optimizer and learning-rate schedule a config can name: AdamW (torch, bitsandbytes 8-bit, paged on CUDA), Lion, Adafactor, SGD and Muon; parameter groups (`weight_decay`, `lr_groups`, LoRA+); Axolotl's cosine variants (a floor, a constant tail, quadratic warmup); NEFTune's embedding noise.
- `axolotl_nb.reward`: Bradley–Terry reward models and process (step-level) reward models on the one run path: a sequence- or token-classification head, the pairwise loss checked against TRL's `RewardTrainer`, exact step-end labels, and a `score` function for a trained model.
- `axolotl_nb.weights`: Model weights on disk and in memory: every model folder written atomically (a crash never leaves half a model, and leftovers of killed runs are swept), a `.gguf` file converted once into a cached safetensors folder, and NF4 / 8-bit quantization through bitsandbytes."""

__version__ = "0.1.0"

# config first, before any library: it installs the filters for two import-time messages (config.IMPORT_NOISE)
from . import config as _config  # noqa: E402,F401
