"""Tiny random hybrid-attention models (Gated DeltaNet layers with full attention every N-th layer):
Qwen3.5 dense and MoE, Qwen3-Next, each a real ``save_pretrained`` folder of the transformers 5
class, plus the next-token-prediction (MTP) block the real checkpoints carry as ``mtp.*``.

transformers never builds the MTP block (``_keys_to_ignore_on_load_unexpected = ["^mtp.*"]``), but
llama.cpp's converter needs it (without ``mtp_num_hidden_layers`` and ``mtp.*`` tensors it asserts),
and the real releases ship it: one decoder layer (full attention) plus ``fc`` [H, 2H] and three
norms. It is added here with the shapes of the real checkpoints, random values.

Shapes exercise what the converter must get right: more value heads than key heads (the V-head
reorder), some rows a multiple of 256 (k-quants) and some only of 32.

    from tiny_hybrid import tiny_hybrid      # tests/ is on sys.path under pytest
    folder = tiny_hybrid("qwen35", cache_dir)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tiny_models import _copy_smollm2_tokenizer, built_once

# 4 layers: three DeltaNet layers, then full attention (full_attention_interval 4, as released).
_LINEAR = dict(linear_conv_kernel_dim=4, linear_key_head_dim=32, linear_value_head_dim=32, linear_num_key_heads=2,
               linear_num_value_heads=4)
_BASE = dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
             max_position_embeddings=512, rms_norm_eps=1e-6, tie_word_embeddings=False,
             layer_types=["linear_attention"] * 3 + ["full_attention"], **_LINEAR)
# Partial rotary (a quarter of each head) with interleaved M-RoPE sections summing to the rotary pairs.
_MROPE = {"rope_type": "default", "rope_theta": 10_000_000.0, "partial_rotary_factor": 0.25,
          "mrope_section": [3, 3, 2], "mrope_interleaved": True}
_MOE = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=128, shared_expert_intermediate_size=256)

# arch -> (config class, config kwargs, MTP layer is MoE)
HYBRID_SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    "qwen35": ("Qwen3_5TextConfig", dict(_BASE, intermediate_size=512, rope_parameters=_MROPE,
                                         mtp_num_hidden_layers=1)),
    "qwen35moe": ("Qwen3_5MoeTextConfig", dict(_BASE, **_MOE, rope_parameters=_MROPE, mtp_num_hidden_layers=1)),
    # Qwen3-Next: no M-RoPE; no mtp_num_hidden_layers (llama.cpp counts the mtp.layers.* present).
    "qwen3next": ("Qwen3NextConfig", dict(_BASE, **_MOE, intermediate_size=512, norm_topk_prob=True,
                                          rope_parameters={"rope_type": "default", "rope_theta": 10_000_000.0,
                                                           "partial_rotary_factor": 0.25})),
}
# Multimodal releases (Qwen3_5ForConditionalGeneration): text config class -> (wrapper config class,
# a tiny vision tower, which the GGUF leaves out).
_VISION = dict(depth=1, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=256,
               num_position_embeddings=64)
WRAPPERS = {"Qwen3_5Config": ("Qwen3_5TextConfig", _VISION), "Qwen3_5MoeConfig": ("Qwen3_5MoeTextConfig", _VISION)}
HYBRID_SPECS["qwen35-vl"] = ("Qwen3_5Config", HYBRID_SPECS["qwen35"][1])
HYBRID_SPECS["qwen35moe-vl"] = ("Qwen3_5MoeConfig", HYBRID_SPECS["qwen35moe"][1])
HYBRID_ARCHS: tuple[str, ...] = tuple(HYBRID_SPECS)
# A larger Qwen3.5-shaped model for the memory benchmark (benchmarks/estimate_memory.py): real head
# sizes (128) so the recurrent state (512 KiB per DeltaNet layer) and the KV cache are not lost in
# the noise; 8 layers, full attention on every 4th. Not used by the tests.
HYBRID_SPECS["qwen35-mid"] = ("Qwen3_5TextConfig", dict(
    _BASE, max_position_embeddings=8192, num_hidden_layers=8, hidden_size=512, intermediate_size=1536, num_attention_heads=8,
    num_key_value_heads=2, head_dim=128, linear_key_head_dim=128, linear_value_head_dim=128,
    linear_num_key_heads=4, linear_num_value_heads=8, tie_word_embeddings=True,
    layer_types=(["linear_attention"] * 3 + ["full_attention"]) * 2,
    rope_parameters=dict(_MROPE, mrope_section=[6, 5, 5]), mtp_num_hidden_layers=1))
ROUTER_STD = 0.5  # keeps the top-2 expert choice clear of near ties (see tiny_models.MOE_SPECS)


def build_hybrid_model(arch: str, folder: Path, *, seed: int = 0) -> Path:
    """Write the tiny ``arch`` model (with its MTP block) to ``folder`` (created; must not exist)."""
    import torch
    import transformers
    from safetensors.torch import save_file

    config_class, kwargs = HYBRID_SPECS[arch]
    folder.mkdir(parents=True)
    ids = _copy_smollm2_tokenizer(folder)
    torch.manual_seed(seed)
    if config_class in WRAPPERS:  # the multimodal release: the text model under a vision wrapper
        text_class, vision = WRAPPERS[config_class]
        text = getattr(transformers, text_class)(**{**kwargs, **ids})
        config = getattr(transformers, config_class)(text_config=text.to_dict(), vision_config=vision, **ids)
        model = transformers.AutoModelForImageTextToText.from_config(config)
    else:
        config = getattr(transformers, config_class)(**{**kwargs, **ids})
        model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("linear_attn.norm.weight"):  # gated RMSNorm: plain w
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("norm.weight"):  # (1 + w) norms, stored around 0
                p.copy_(0.1 * torch.randn_like(p))
            elif name.endswith(("mlp.gate.weight", "mlp.router.weight")) or name.endswith("mlp.gate"):
                p.copy_(ROUTER_STD * torch.randn_like(p))
    model = model.to(torch.bfloat16)
    model.save_pretrained(folder)
    state = _mtp_block(model, getattr(config, "text_config", config))
    save_file(state, str(folder / "model-mtp.safetensors"), metadata={"format": "pt"})
    _add_to_index(folder, state, "model-mtp.safetensors")
    gen = folder / "generation_config.json"
    if gen.exists():
        gen.unlink()
    return folder


def _mtp_block(model: Any, config: Any) -> dict[str, Any]:
    """The real checkpoints' ``mtp.*`` tensors: the last (full-attention) decoder layer's tensors,
    perturbed, as mtp.layers.0, plus fc [H, 2H] and its three norms."""
    import torch

    h = config.hidden_size
    last = config.num_hidden_layers - 1
    prefix = next(p for p in (f"model.layers.{last}.", f"model.language_model.layers.{last}.")
                  if any(k.startswith(p) for k in model.state_dict()))
    state = {f"mtp.layers.0.{k[len(prefix):]}": (v + 0.01 * torch.randn_like(v)).contiguous()
             for k, v in model.state_dict().items() if k.startswith(prefix)}
    state["mtp.fc.weight"] = (0.02 * torch.randn(h, 2 * h)).to(torch.bfloat16)
    for norm in ("pre_fc_norm_embedding", "pre_fc_norm_hidden", "norm"):
        state[f"mtp.{norm}.weight"] = (0.1 * torch.randn(h)).to(torch.bfloat16)
    return state


def _add_to_index(folder: Path, state: dict[str, Any], shard: str) -> None:
    """Make the checkpoint a sharded one whose index lists the MTP shard too."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        data = json.loads(index.read_text())
    else:
        from safetensors import safe_open

        (folder / "model.safetensors").rename(folder / "model-main.safetensors")
        with safe_open(str(folder / "model-main.safetensors"), "pt") as f:
            data = {"metadata": {}, "weight_map": {k: "model-main.safetensors" for k in f.keys()}}
    data["weight_map"].update({k: shard for k in state})
    index.write_text(json.dumps(data, indent=1))


def tiny_hybrid(arch: str, cache_dir: Path) -> Path:
    """The tiny ``arch`` model under ``cache_dir``, built on first use."""
    return built_once(arch, cache_dir, build_hybrid_model)
