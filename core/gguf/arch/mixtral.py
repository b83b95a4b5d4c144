"""Mixtral (8x7B, 8x22B): LLaMA attention (interleaved RoPE, so q/k are un-permuted) with every
MLP a router over 8 experts stored as ``block_sparse_moe.experts.<e>.w1/w2/w3``; llama.cpp runs it
as architecture 'llama' with expert_count set (conversion/llama.py LlamaModel)."""

from __future__ import annotations

from dataclasses import replace

from quantpress.core.gguf.arch import MOE_HPARAMS, ExpertSpec
from quantpress.core.gguf.arch.llama import SPEC as LLAMA

SPEC = replace(LLAMA, name="mixtral", hf_classes=("MixtralForCausalLM",), hparams=LLAMA.hparams + MOE_HPARAMS,
               experts=ExpertSpec(count_keys=("num_local_experts",)))
