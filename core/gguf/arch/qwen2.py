"""Qwen2 / Qwen2.5: NEOX RoPE (no permutation), q/k/v biases kept as F32 tensors, no vocab_size
key (conversion/qwen.py Qwen2Model)."""

from __future__ import annotations

from quantpress.core.gguf.arch import TEXT_HPARAMS, ArchSpec

SPEC = ArchSpec(name="qwen2", gguf_arch="qwen2", hf_classes=("Qwen2ForCausalLM",), hparams=TEXT_HPARAMS)
