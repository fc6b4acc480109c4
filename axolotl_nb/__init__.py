"""YAML-driven LLM fine-tuning (SFT, LoRA/QLoRA, DPO/ORPO/KTO/SimPO/GRPO, FSDP) written notebook-first with nbdev

Modules:

- `axolotl_nb.distributed`: FSDP2 (`fully_shard`), FSDP + QLoRA, DeepSpeed ZeRO configs and the torchrun / accelerate launchers — the same YAML that trains on one process trains across processes, GPUs and nodes on PyTorch's own distributed engine.
- `axolotl_nb.inference`: Chat with the base model or a trained adapter: one prompt, a file of prompts, an interactive loop, or a gradio UI — with the tokenizer's chat template, streamed tokens and deterministic greedy decoding by default.
- `axolotl_nb.lora`: PEFT adapters from the YAML: target modules (names, regex or every linear layer), DoRA, rsLoRA, LoRA+ optimizer groups, k-bit preparation for QLoRA, continuing an adapter — and `merge-lora`.
- `axolotl_nb.models`: Load the tokenizer and the model a config names — a Hub id, a local directory or a `.gguf` file — with pad and special tokens, NF4 / 8-bit quantization, the attention backend and gradient checkpointing.
- `axolotl_nb.train`: Supervised fine-tuning from one config: training arguments, callbacks (loss watchdog, early stopping, loss curve and summary), a `Trainer` that packs with multipack, checkpoints and resume, `train(cfg)` and `evaluate(cfg)`."""

__version__ = "0.1.0"
