"""Gated DeltaNet hybrids (Qwen3-Next, Qwen3.5/3.6 dense and MoE): what the three families share.

Three of every four layers are Gated DeltaNet (linear attention with a recurrent state, llama.cpp's
``ssm_*`` tensors), the fourth full attention (``full_attention_interval``). Following llama.cpp's
converter (conversion/qwen.py Qwen3NextModel, _LinearAttentionVReorderBase, _QwenMtpMixin):

- metadata: ssm.conv_kernel, ssm.state_size (key head dim), ssm.group_count (key heads),
  ssm.time_step_rank (value heads), ssm.inner_size (value heads x value head dim), the per-layer
  attention.recurrent_layers array, full_attention_interval, rope.dimension_count (partial rotary);
- A_log is written as A = -exp(A_log); dt_bias becomes ssm_dt.bias; conv1d [C, 1, K] is squeezed
  to [C, K] and kept F32 (llama-quantize never quantizes ssm_conv1d);
- every RMSNorm is (1 + w) except the DeltaNet output norm (linear_attn.norm), so +1 goes into the
  others; the MTP block's norms included;
- Qwen3.5 only: with more value heads than key heads, V heads are reordered from grouped-by-key-head
  to tiled order (ggml broadcasts by tiling) in in_proj_qkv's V rows, in_proj_z, in_proj_a/b,
  A_log, dt_bias, conv1d's V channels and out_proj's columns;
- Qwen3-Next only: in_proj_qkvz [per key head: q, k, v, z] is split into attn_qkv (all q, all k,
  all v) and attn_gate (all z); in_proj_ba stays one ssm_ba tensor;
- MTP: ``mtp.layers.N.*`` become blocks n_layer + N; mtp.fc / pre_fc_norm_embedding /
  pre_fc_norm_hidden / norm become that block's nextn.eh_proj / enorm / hnorm / shared_head_norm.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from quantpress.core.gguf.arch import KV, Config, HParam, TensorRule, head_dim, rope_scaling

Outputs = list[tuple[str, tuple[int, ...], tuple[str, ...]]]
RuleFn = Callable[[str, tuple[int, ...], Config], Outputs]

DELTANET_HPARAMS = (
    HParam("ssm.conv_kernel", ("linear_conv_kernel_dim",)),
    HParam("ssm.state_size", ("linear_key_head_dim",)),
    HParam("ssm.group_count", ("linear_num_key_heads",)),
    HParam("ssm.time_step_rank", ("linear_num_value_heads",)),
    HParam("full_attention_interval", ("full_attention_interval",), default=4),
)
# Qwen3.5's graph requires rope.dimension_sections; llama.cpp writes this default when the config
# has no mrope_section (conversion/qwen.py _Qwen35MRopeMixin).
DEFAULT_MROPE_SECTION = (11, 11, 10, 0)
MTP_COUNT_KEY = "mtp_num_hidden_layers"
# MTP layer tensors; group 1 is the layer index (Qwen3-Next's config does not count them).
MTP_LAYER_PATTERN = r"^(?:model\.)?mtp\.layers\.(\d+)\."


def recurrent_layers(config: Config) -> list[bool]:
    """Per block: DeltaNet (True) or full attention; MTP blocks are attention blocks."""
    n_layer = int(config["num_hidden_layers"])
    types = config.get("layer_types")
    if types is None:
        interval = int(config.get("full_attention_interval") or 4)
        types = ["full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(n_layer)]
    return [t == "linear_attention" for t in types] + [False] * int(config.get(MTP_COUNT_KEY) or 0)


def deltanet_kv(config: Config, *, mrope: bool) -> list[KV]:
    factor = rope_scaling(config).get("partial_rotary_factor", config.get("partial_rotary_factor", 0.25))
    out: list[KV] = [
        ("ssm.inner_size", int(config["linear_value_head_dim"]) * int(config["linear_num_value_heads"]), "UINT32"),
        ("attention.recurrent_layers", recurrent_layers(config), "ARRAY[BOOL]"),
        ("rope.dimension_count", int(head_dim(config) * float(factor or 0.25)), "UINT32"),
    ]
    if mrope:
        section = list(rope_scaling(config).get("mrope_section") or DEFAULT_MROPE_SECTION)
        out.append(("rope.dimension_sections", [int(s) for s in (section + [0] * 4)[:4]], "ARRAY[INT32]"))
    return out


# ------------------------------------------------------------------------------------ tensors

# GGUF names written directly: gguf-py 0.19's tables lack the nextn tensors for these archs.
_MTP_HEAD = {"fc": "eh_proj", "pre_fc_norm_embedding": "enorm", "pre_fc_norm_hidden": "hnorm",
             "norm": "shared_head_norm"}


def _mtp_layer(name: str, shape: tuple[int, ...], config: Config) -> Outputs:
    m = re.match(r"^(?:model\.)?mtp\.layers\.(\d+)\.(.+)$", name)
    assert m is not None
    return [(f"model.layers.{int(config['num_hidden_layers']) + int(m[1])}.{m[2]}", shape, ())]


def _mtp_head(name: str, shape: tuple[int, ...], config: Config) -> Outputs:
    m = re.match(r"^(?:model\.)?mtp\.(\w+)\.weight$", name)
    assert m is not None
    return [(f"blk.{config['num_hidden_layers']}.nextn.{_MTP_HEAD[m[1]]}.weight", shape, ())]


def _dropped(name: str, shape: tuple[int, ...], config: Config) -> Outputs:
    return []


def _dims(config: Config) -> tuple[int, int, int, int]:
    """(key heads, value heads per key head, key head dim, value head dim)."""
    nk, nv = int(config["linear_num_key_heads"]), int(config["linear_num_value_heads"])
    return nk, nv // nk, int(config["linear_key_head_dim"]), int(config["linear_value_head_dim"])


def _vheads(config: Config, first_row: int, hd: int, reorder: bool) -> tuple[str, ...]:
    """Rows first_row.. (V heads of hd rows each) from grouped to tiled order (Qwen3.5 only)."""
    nk, per_k, _, _ = _dims(config)
    return (f"vheads:{first_row}:{nk}:{per_k}:{hd}",) if reorder and per_k > 1 else ()


def linear_attn_rules(*, reorder_v: bool) -> tuple[TensorRule, ...]:
    """The DeltaNet and MTP tensor rules (``reorder_v``: Qwen3.5's V-head reorder)."""

    def qkv(name: str, shape: tuple[int, ...], c: Config) -> Outputs:
        nk, _, dk, _ = _dims(c)
        return [(name, shape, _vheads(c, 2 * nk * dk, _dims(c)[3], reorder_v))]

    def by_vhead(hd_of: str) -> RuleFn:
        def rule(name: str, shape: tuple[int, ...], c: Config) -> Outputs:
            hd = _dims(c)[3] if hd_of == "dv" else 1
            return [(name, shape, _vheads(c, 0, hd, reorder_v))]
        return rule

    def a_log(name: str, shape: tuple[int, ...], c: Config) -> Outputs:
        return [(name, shape, ("neg_exp",) + _vheads(c, 0, 1, reorder_v))]

    def dt_bias(name: str, shape: tuple[int, ...], c: Config) -> Outputs:
        return [(name.removesuffix(".dt_bias") + ".dt_proj.bias", shape, _vheads(c, 0, 1, reorder_v))]

    def conv1d(name: str, shape: tuple[int, ...], c: Config) -> Outputs:
        nk, _, dk, dv = _dims(c)
        return [(name, (shape[0], shape[-1]), _vheads(c, 2 * nk * dk, dv, reorder_v))]

    def out_proj(name: str, shape: tuple[int, ...], c: Config) -> Outputs:
        nk, per_k, _, dv = _dims(c)
        return [(name, shape, (f"vcols:{nk}:{per_k}:{dv}",) if reorder_v and per_k > 1 else ())]

    def qkvz(name: str, shape: tuple[int, ...], c: Config) -> Outputs:
        nk, per_k, dk, dv = _dims(c)
        base = name.removesuffix("in_proj_qkvz.weight")
        args = f"{nk}:{dk}:{per_k * dv}"
        return [(base + "in_proj_qkv.weight", (nk * (2 * dk + per_k * dv), shape[1]), (f"qkvz:qkv:{args}",)),
                (base + "in_proj_z.weight", (nk * per_k * dv, shape[1]), (f"qkvz:z:{args}",))]

    return (
        TensorRule(r"^model\.visual\.", _dropped),  # the vision tower of the multimodal release
        TensorRule(r"^(model\.)?mtp\.layers\.\d+\.", _mtp_layer),
        TensorRule(r"^(model\.)?mtp\.\w+\.weight$", _mtp_head),
        TensorRule(r"\.linear_attn\.in_proj_qkvz\.weight$", qkvz),
        TensorRule(r"\.linear_attn\.in_proj_qkv\.weight$", qkv),
        TensorRule(r"\.linear_attn\.in_proj_z\.weight$", by_vhead("dv")),
        TensorRule(r"\.linear_attn\.in_proj_[ab]\.weight$", by_vhead("1")),
        TensorRule(r"\.linear_attn\.A_log$", a_log),
        TensorRule(r"\.linear_attn\.dt_bias$", dt_bias),
        TensorRule(r"\.linear_attn\.conv1d\.weight$", conv1d),
        TensorRule(r"\.linear_attn\.out_proj\.weight$", out_proj),
    )
