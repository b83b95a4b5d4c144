"""Per-tensor GGML types of each GGUF mix ("Q4_K_M" etc.): the one source of truth shared by the
planner, the converter and the memory estimator.

Two policies:
- ``llama.cpp``: llama-quantize's choices exactly (src/llama-quant.cpp @0c1e57098,
  llama_tensor_get_type + tensor_type_fallback) for dense models, so files match its sizes.
- ``quantpress`` (default): the same mixing rules, but a better choice when a row length is not a
  multiple of 256 and a k-quant must fall back to a 32-block type. llama.cpp falls back from Q2_K and
  Q3_K to Q4_0; quantpress to IQ4_NL (the same 4.5 bpw, non-uniform levels, lower error on every
  tensor the kernel benchmark measures). Q4_K -> Q5_0 and Q5_K -> Q5_1
  as in llama.cpp: with quantpress's scale search for Q5_1 (core/quant, SEARCH_WITHOUT_IMPORTANCE)
  Q5_1 is the more accurate of the two, so Q5_K mixes stay better than Q4_K mixes, which Q5_0 could
  not guarantee (Q5_K_S measured no better than Q4_K_S). Measured in benchmarks/convert.py
  (BENCHMARKS.md, "GGUF conversion"). The i-quant mixes (IQ1_S ... IQ3_M) keep llama.cpp's fallbacks
  under both policies (_fallback_policy).

Tensors are visited in llama.cpp's order (non-block tensors, then blk.0, blk.1, ... each sorted by
name) because the attn_v rules count visits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from quantpress.core.choices import Policy as Policy  # re-exported: the mix rules own it
from quantpress.core.errors import InvalidInput
from quantpress.core.gguf.layout import GGML_TYPES, block_size
from quantpress.core.gguf.mixes_iq import IQ_FALLBACK, IQ_MIXES, IQ_OUTPUT, IQ_TOKEN_EMBD, iq_type

MXFP4_MOE = "MXFP4_MOE"


@dataclass(frozen=True)
class Mix:
    name: str
    ftype: int  # llama.h llama_ftype, written as general.file_type
    base: str  # default GGML type of quantizable tensors


MIXES: dict[str, Mix] = {m.name: m for m in (
    Mix("F32", 0, "F32"), Mix("F16", 1, "F16"), Mix("BF16", 32, "BF16"), Mix("Q8_0", 7, "Q8_0"),
    Mix("Q6_K", 18, "Q6_K"), Mix("Q5_K_M", 17, "Q5_K"), Mix("Q5_K_S", 16, "Q5_K"), Mix("Q5_0", 8, "Q5_0"),
    Mix("Q5_1", 9, "Q5_1"), Mix("Q4_K_M", 15, "Q4_K"), Mix("Q4_K_S", 14, "Q4_K"), Mix("Q4_0", 2, "Q4_0"),
    Mix("Q4_1", 3, "Q4_1"), Mix("Q3_K_L", 13, "Q3_K"), Mix("Q3_K_M", 12, "Q3_K"), Mix("Q3_K_S", 11, "Q3_K"),
    Mix("Q2_K", 10, "Q2_K"), Mix("IQ4_NL", 25, "IQ4_NL"), Mix("IQ4_XS", 30, "IQ4_XS"),
    # llama-quantize's MXFP4_MOE: expert tensors (3-D) MXFP4, every other quantizable tensor Q8_0.
    Mix(MXFP4_MOE, 38, "MXFP4"),
    *(Mix(name, ftype, base) for name, (ftype, base) in IQ_MIXES.items()),
)}
FLOAT_MIXES = ("F32", "F16", "BF16")


POLICIES = tuple(p.value for p in Policy)

# tensor_type_fallback: a 256-block type whose row length does not divide -> a 32-block type.
FALLBACK: dict[str, dict[str, str]] = {
    "llama.cpp": {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
                  "IQ4_XS": "IQ4_NL", **IQ_FALLBACK},
    "quantpress": {"Q2_K": "IQ4_NL", "Q3_K": "IQ4_NL", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
                   "IQ4_XS": "IQ4_NL", **IQ_FALLBACK},
}


@dataclass(frozen=True)
class MixContext:
    """Model facts and user choices the rules depend on."""

    n_layers: int
    n_gqa: int = 1  # n_head / n_head_kv
    has_imatrix: bool = False
    policy: Policy = Policy.QUANTPRESS
    output_type: str | None = None  # user override for output.weight (and tied token_embd)
    token_embd_type: str | None = None  # user override for token_embd.weight
    tensor_overrides: tuple[tuple[str, str], ...] = ()  # (regex, type): first match wins
    is_70b_llama: bool = False
    n_expert: int = 0  # routed experts per MoE layer (0: dense)


def _layer(name: str) -> int:
    m = re.match(r"blk\.(\d+)\.", name)
    return int(m.group(1)) if m else -1


def llama_order(names: Sequence[str]) -> list[str]:
    """llama.cpp's weights_map order: non-block tensors first, then by block index, then by name."""
    return sorted(names, key=lambda n: (_layer(n), n))


# Name parts llama-quantize never quantizes (llama-quant.cpp tensor_allows_quantization): expert
# routers, and the small DeltaNet/Mamba conv1d kernels (kept F32 as the converter writes them).
NEVER_QUANTIZED = ("ffn_gate_inp", "ssm_conv1d")


def allows_quantization(name: str, n_dims: int) -> bool:
    """tensor_allows_quantization for the architectures quantpress converts (2-D and 3-D expert
    weights). Routers (ffn_gate_inp) stay F32, and so does the shared-expert gate
    (ffn_gate_inp_shexp), which llama.cpp's converter writes as F32 and its quantizer never sees as
    2-D (ggml_n_dims of a [D, 1] tensor is 1)."""
    return (n_dims >= 2 and name.endswith("weight") and "_norm.weight" not in name
            and not any(part in name for part in NEVER_QUANTIZED))


def ggml_n_dims(shape: Sequence[int]) -> int:
    """ggml_n_dims of a numpy-order shape: trailing ggml dimensions of 1 (leading here) do not count."""
    dims = list(shape)
    while len(dims) > 1 and dims[0] == 1:
        dims.pop(0)
    return len(dims)


def _category(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name == "token_embd.weight":
        return "token_embd"
    for key in ("attn_qkv.weight", "attn_kv_b.weight", "attn_v.weight"):
        if key in name:
            return "attn_v"
    for key, cat in (("attn_k.weight", "attn_k"), ("attn_q.weight", "attn_q"),
                     ("attn_output.weight", "attn_output"), ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"),
                     ("ffn_down", "ffn_down")):
        if key in name:
            return cat
    return "other"


def use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _attn_v(mix: str, i: int, n: int, ctx: MixContext, t: str) -> str:
    if mix == "Q2_K":
        t = "Q4_K" if ctx.n_gqa >= 4 else "Q3_K"
    elif mix == "Q3_K_M":
        t = "Q5_K" if i < 2 else "Q4_K"
    elif mix == "Q3_K_L":
        t = "Q5_K"
    elif mix in ("IQ4_NL", "IQ4_XS") and ctx.n_gqa >= 4:
        t = "Q5_K"
    elif mix in ("Q4_K_M", "Q5_K_M") and use_more_bits(i, n):
        t = "Q6_K"
    elif mix == "Q4_K_S" and i < 4:
        t = "Q5_K"
    if ctx.is_70b_llama and t in ("Q3_K", "Q4_K"):
        t = "Q5_K"
    return t


def _ffn_down(mix: str, i: int, n: int, ctx: MixContext, t: str) -> str:
    if mix == "Q2_K":
        return "Q3_K"
    if mix == "Q3_K_M":
        return "Q5_K" if i < n // 16 else "Q4_K"
    if mix == "Q3_K_L":
        return "Q5_K"
    if mix == "Q4_K_M":
        return "Q6_K" if use_more_bits(i, n) else t
    if mix in ("IQ4_NL", "IQ4_XS") and i < n // 8 and not ctx.has_imatrix:
        return "Q5_K"
    if mix == "Q5_K_M" and use_more_bits(i, n):
        return "Q6_K"
    if mix == "Q4_K_S" and i < n // 8:
        return "Q5_K"
    if mix in ("Q4_0", "Q5_0") and ctx.has_imatrix and i < n // 8:
        return "Q4_1" if mix == "Q4_0" else "Q5_1"
    return t


_ATTN_OUTPUT = {"Q2_K": "Q3_K", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K"}
# Mixes whose attn_output llama.cpp raises to Q5_K for 8-expert models.
_ATTN_OUTPUT_8_EXPERTS = frozenset({"Q2_K", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ4_XS"})


def _fallback(name: str, n_per_row: int, t: str, policy: str) -> str:
    """tensor_type_fallback (with the policy's table); F16 if even the fallback does not fit."""
    if n_per_row % block_size(t) == 0:
        return t
    t = FALLBACK[policy].get(t, t)
    return t if n_per_row % block_size(t) == 0 else "F16"


def _fallback_policy(mix_name: str, policy: str) -> str:
    """The i-quant mixes keep llama.cpp's own fallbacks whatever the policy: with an imatrix, the demo
    model's IQ2_XXS with IQ4_NL instead of Q4_0 for its 576-wide attn_v was 3.0% ± 1.1% worse than
    llama-quantize's file (IQ1_S/IQ1_M within noise either way; BENCHMARKS.md, "GGUF i-quants"), and
    these mixes are llama.cpp's designs, each checked against llama_model_quantize."""
    return "llama.cpp" if mix_name in IQ_MIXES else policy


def _check_type(t: str, what: str) -> str:
    t = t.upper()
    if t not in GGML_TYPES:
        raise InvalidInput(f"{what}: unknown tensor type '{t}'; use one of {', '.join(GGML_TYPES)}")
    return t


def tensor_types(shapes: dict[str, tuple[int, ...]], mix_name: str, ctx: MixContext) -> dict[str, str]:
    """GGML type for every tensor (``shapes``: GGUF name -> numpy-order shape), in llama.cpp order."""
    if mix_name not in MIXES:
        raise InvalidInput(f"unknown format '{mix_name}'; choose one of {', '.join(MIXES)}")
    Policy.parse(ctx.policy, "policy")
    mix = MIXES[mix_name]
    overrides = [(re.compile(p), _check_type(t, f"override '{p}'")) for p, t in ctx.tensor_overrides]
    order = llama_order(list(shapes))
    tied = "output.weight" not in shapes
    n_attn_v = sum(1 for n in order if _category(n) == "attn_v")
    fallback_policy = _fallback_policy(mix_name, ctx.policy)
    i_attn_v, i_ffn_down = 0, 0
    out: dict[str, str] = {}
    for name in order:
        shape = shapes[name]
        if not allows_quantization(name, ggml_n_dims(shape)):
            out[name] = "F32"
            continue
        cat = _category(name)
        if mix_name in FLOAT_MIXES:
            t = mix.base
        else:
            t = _rule(name, cat, shape, mix, ctx, tied, i_attn_v, n_attn_v,
                      _layer(name) if ctx.n_expert > 1 else i_ffn_down)
        t = _user_type(name, cat, tied, ctx, overrides) or t
        out[name] = _fallback(name, shape[-1], t, fallback_policy) if t not in FLOAT_MIXES else t
        i_attn_v += cat == "attn_v"
        i_ffn_down += cat == "ffn_down"
    return out


def _user_type(name: str, cat: str, tied: bool, ctx: MixContext,
               overrides: list[tuple[re.Pattern[str], str]]) -> str | None:
    if cat == "token_embd" and ctx.token_embd_type:
        return _check_type(ctx.token_embd_type, "token embedding type")
    if (cat == "output" or (tied and cat == "token_embd")) and ctx.output_type:
        return _check_type(ctx.output_type, "output type")
    for pattern, t in overrides:
        if pattern.search(name):
            return t
    return None


def _rule(name: str, cat: str, shape: tuple[int, ...], mix: Mix, ctx: MixContext, tied: bool,
          i_attn_v: int, n_attn_v: int, i_ffn_down: int) -> str:
    """llama_tensor_get_type_impl for non-Falcon models. With experts, ffn_down's layer index comes
    from the tensor name (``i_ffn_down`` is then that index), as llama.cpp's layer_info does; the
    8-expert (Mixtral) rules raise attn_k/attn_v to Q8_0 and attn_output to Q5_K in low mixes."""
    t = mix.base
    if mix.name == MXFP4_MOE:  # llama_tensor_get_type_impl: experts (ne[2] > 1) MXFP4, the rest Q8_0
        return "MXFP4" if len(shape) == 3 and shape[0] > 1 else "Q8_0"
    if cat == "output" or (tied and cat == "token_embd"):
        if shape[-1] % block_size(t):
            return "Q8_0"
        return t if t == "Q8_0" else IQ_OUTPUT.get(mix.name, "Q6_K")
    if cat == "token_embd":
        return IQ_TOKEN_EMBD.get(mix.name, t)
    if mix.name in IQ_MIXES:
        return iq_type(mix.name, cat, _layer(name), i_ffn_down, ctx.n_layers, n_gqa=ctx.n_gqa,
                       has_imatrix=ctx.has_imatrix, is_70b_llama=ctx.is_70b_llama, base=t)
    if cat == "attn_v":
        return "Q8_0" if ctx.n_expert == 8 else _attn_v(mix.name, i_attn_v, n_attn_v, ctx, t)
    if cat == "attn_k" and ctx.n_expert == 8:
        return "Q8_0"
    if cat == "ffn_down":
        return _ffn_down(mix.name, i_ffn_down, ctx.n_layers, ctx, t)
    if cat == "attn_output":
        if ctx.n_expert == 8:
            return "Q5_K" if mix.name in _ATTN_OUTPUT_8_EXPERTS else t
        return _ATTN_OUTPUT.get(mix.name, t)
    return t
