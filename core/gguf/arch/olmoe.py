"""OLMoE (allenai/OLMoE-1B-7B): q/k RMS norms over the whole projection (not per head), NEOX RoPE,
64 routed experts, no shared expert (conversion/olmo.py OlmoeModel)."""

from __future__ import annotations

from quantpress.core.gguf.arch import MOE_HPARAMS, TEXT_HPARAMS, ArchSpec, ExpertSpec

SPEC = ArchSpec(name="olmoe", gguf_arch="olmoe", hf_classes=("OlmoeForCausalLM",), hparams=TEXT_HPARAMS + MOE_HPARAMS,
                experts=ExpertSpec(norm_topk=False))
