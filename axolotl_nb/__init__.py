"""YAML-driven LLM fine-tuning (SFT, LoRA/QLoRA, DPO/ORPO/KTO/SimPO/GRPO, FSDP) written notebook-first with nbdev

Modules:

- `axolotl_nb.distributed`: FSDP2 (`fully_shard`), FSDP + QLoRA, DeepSpeed ZeRO configs and the torchrun / accelerate launchers — the same YAML that trains on one process trains across processes, GPUs and nodes on PyTorch's own distributed engine.
- `axolotl_nb.harness`: `axolotl-nb lm-eval cfg.yml`: run EleutherAI's lm-evaluation-harness (0.4.x, extra `eval`) on what training produced — the adapter (merged for speed) or the full fine-tune — with the tasks and batch size from the config.
- `axolotl_nb.inference`: Chat with the base model or a trained adapter: one prompt, a file of prompts, a terminal chat, or a gradio UI — with the tokenizer's chat template, streamed tokens, a stop that really stops, and greedy decoding by default.
- `axolotl_nb.lora`: PEFT adapters from the YAML: target modules (names, regex or every linear layer), DoRA, rsLoRA, LoRA+ optimizer groups, k-bit preparation for QLoRA, continuing an adapter — and `merge-lora`.
- `axolotl_nb.loss`: The training loss from the final hidden states and the LM head weight, a chunk of tokens at a time: never the `[tokens × vocab]` logits. Exact against `F.cross_entropy` on the full logits, loss and gradients.
- `axolotl_nb.models`: Load the tokenizer and the model a config names — a Hub id, a local directory or a `.gguf` file — with pad and special tokens, NF4 / 8-bit quantization, the attention backend and gradient checkpointing.
- `axolotl_nb.reward`: Bradley–Terry reward models and process (step-level) reward models on the one run path: a sequence- or token-classification head, the pairwise loss checked against TRL's `RewardTrainer`, exact step-end labels, and a `score` function for a trained model."""

__version__ = "0.1.0"
