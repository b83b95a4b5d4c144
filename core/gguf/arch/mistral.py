"""Mistral (dense, HF format): converted exactly like LLaMA (llama.cpp arch 'llama'); the sliding
window of Mistral-7B-v0.1 is not used by llama.cpp's llama graph."""

from __future__ import annotations

from dataclasses import replace

from quantpress.core.gguf.arch.llama import SPEC as LLAMA

SPEC = replace(LLAMA, name="mistral", hf_classes=("MistralForCausalLM",))
