"""The i-quant GGUF mixes below 4 bits (IQ1_S ... IQ3_M): llama-quantize's per-tensor choices for them.

Same source as core/gguf/mixes.py (llama.cpp src/llama-quant.cpp, as vendored by llama-cpp-python 0.3.36:
llama_ftype_get_default_type, llama_tensor_get_type_impl, tensor_type_fallback, tensor_requires_imatrix),
for dense models. The planner calls :func:`iq_type` from ``mixes._rule``; both policies use these
rules unchanged (quantpress has measured no better choice for them).

Several of these types cannot be made without importance weights: ggml asserts on a missing importance
vector for IQ2_XXS, IQ2_XS and IQ1_S, and llama-quantize refuses IQ3_XXS, IQ2_S and IQ1_M too
(tensor_requires_imatrix: the grid search without weights gives unusable models). quantpress gives them
importance from calibration text, an imatrix file, or the weights estimate (core/calibration/weights.py);
``--calibration none`` with such a mix is refused at planning time (:func:`tensors_needing_importance`).
"""

from __future__ import annotations

from collections.abc import Mapping

# file type -> (llama.h llama_ftype, default GGML type from llama_ftype_get_default_type)
IQ_MIXES: dict[str, tuple[int, str]] = {
    "IQ1_S": (24, "IQ1_S"), "IQ1_M": (31, "IQ1_M"),
    "IQ2_XXS": (19, "IQ2_XXS"), "IQ2_XS": (20, "IQ2_XS"), "IQ2_S": (28, "IQ2_XS"), "IQ2_M": (29, "IQ2_S"),
    "IQ3_XXS": (23, "IQ3_XXS"), "IQ3_XS": (22, "IQ3_S"), "IQ3_S": (26, "IQ3_S"), "IQ3_M": (27, "IQ3_S"),
}

# tensor_type_fallback: these 256-block types fall back to IQ4_NL (32-weight blocks) when a row does not divide.
IQ_FALLBACK: dict[str, str] = {t: "IQ4_NL" for t in ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S")}

# tensor_requires_imatrix: target types llama-quantize will not write without importance (except for
# token_embd / output, which never need it).
NEEDS_IMPORTANCE = frozenset({"IQ3_XXS", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_M", "IQ1_S"})

# The lowest mixes share one branch of llama_tensor_get_type_impl.
_LOW = frozenset({"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M"})
# ... inside which IQ2_S / IQ2_M protect attn_v and the first ffn_down with IQ3_S, the others with Q2_K.
_LOW_PROTECT = {"IQ2_S": "IQ3_S", "IQ2_M": "IQ3_S"}

# output.weight (and a tied token_embd): Q5_K for the low mixes and IQ3_XXS, Q6_K otherwise.
IQ_OUTPUT: dict[str, str] = {m: "Q5_K" for m in _LOW | {"IQ3_XXS"}}
# an untied token_embd.weight
IQ_TOKEN_EMBD: dict[str, str] = {"IQ1_S": "Q2_K", "IQ1_M": "Q2_K", "IQ2_XXS": "Q2_K", "IQ2_XS": "Q2_K",
                                 "IQ2_S": "IQ3_S", "IQ2_M": "IQ3_S", "IQ3_XXS": "IQ3_S"}

# Outside the low branch: (mix, category) -> type, where the rule does not depend on the layer.
_FIXED: dict[tuple[str, str], str] = {
    ("IQ3_XS", "attn_k"): "IQ3_XXS", ("IQ3_XS", "attn_q"): "IQ3_XXS",
    ("IQ3_XXS", "attn_k"): "IQ2_S", ("IQ3_XXS", "attn_q"): "IQ2_S",
    ("IQ3_XXS", "attn_output"): "IQ3_S", ("IQ3_M", "attn_output"): "Q4_K",
}


def iq_type(mix: str, cat: str, layer: int, i_ffn_down: int, n_layers: int, *, n_gqa: int,
            has_imatrix: bool, is_70b_llama: bool, base: str) -> str:
    """GGML type of a quantizable block tensor (category ``cat``) in i-quant mix ``mix``.

    ``layer``: the tensor's block index (llama.cpp's ffn_gate/ffn_up counters, equal for dense models);
    ``i_ffn_down``: how many ffn_down tensors came before this one."""
    if mix in _LOW:
        protect = _LOW_PROTECT.get(mix, "Q2_K")
        if cat == "attn_v":
            return "Q4_K" if n_gqa >= 4 else protect
        if cat == "ffn_down":
            return protect if i_ffn_down < n_layers // 8 else base
        if cat == "attn_output":
            return {"IQ1_S": "IQ2_XXS", "IQ1_M": "IQ2_XXS", "IQ2_S": "IQ3_S", "IQ2_M": "IQ3_S"}.get(mix, base)
        return base
    if cat == "attn_v":
        t = base
        if mix == "IQ3_XXS":
            t = "Q4_K" if n_gqa >= 4 else "IQ3_XXS" if has_imatrix else "IQ3_S"
        elif (mix in ("IQ3_XS", "IQ3_S") and n_gqa >= 4) or mix == "IQ3_M":
            t = "Q4_K"
        # 70B Llama: 8 heads share attn_v, so more bits there cost almost nothing
        return "Q5_K" if is_70b_llama and t in ("Q3_K", "Q4_K") else t
    if cat == "ffn_down":
        if mix == "IQ3_XXS" and not has_imatrix:
            return "Q4_K" if i_ffn_down < n_layers // 8 else "Q3_K"
        if mix == "IQ3_M" and i_ffn_down < n_layers // 8:
            return "Q4_K"
        return base
    if cat in ("ffn_gate", "ffn_up"):
        middle = n_layers // 8 <= layer < 7 * n_layers // 8
        return "IQ3_XXS" if mix == "IQ3_XS" and middle else base
    return _FIXED.get((mix, cat), base)


def tensors_needing_importance(types: Mapping[str, str]) -> list[str]:
    """Names of the tensors in a planned output (name -> GGML type) that llama-quantize would refuse to
    quantize without importance weights."""
    return [n for n, t in types.items()
            if t in NEEDS_IMPORTANCE and n not in ("token_embd.weight", "output.weight")]
