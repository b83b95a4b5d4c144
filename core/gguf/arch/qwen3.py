"""Qwen3 (dense): Qwen2 without biases plus per-head q/k RMS norms (attn_q_norm/attn_k_norm) and
an explicit head_dim written as key_length/value_length (conversion/qwen.py Qwen3Model)."""

from __future__ import annotations

from quantpress.core.gguf.arch import TEXT_HPARAMS, ArchSpec

SPEC = ArchSpec(name="qwen3", gguf_arch="qwen3", hf_classes=("Qwen3ForCausalLM",), hparams=TEXT_HPARAMS)
