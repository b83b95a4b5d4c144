"""Per-tensor sensitivity: what one unit of importance-weighted squared quantization error in a tensor
costs in KL-divergence of the next-token distribution, estimated from the weights (no text).

The importance-weighted error of a linear, WE = Σ_ij E[x_j²]·(w_ij − q_ij)², is the energy of the
noise it adds to its output per token. The estimate follows that noise to the residual stream and on
to the logits, with the same propagated energies as the importance estimate (core/calibration/weights.py,
whose ``trace`` provides them):

- attn_output, ffn_down write into the residual stream: gain 1;
- attn_v: the noise mixes through attention (variance kept) into o's input, repeated over the n_gqa
  query heads sharing a KV head: gain = n_gqa · mean column energy Σ_k W_o[k, i]²;
- ffn_up: noise on u reaches down's input times E[act(g)²]; ffn_gate: times E[act'(g)²]·E[u²]; both
  then through W_down's column energies;
- attn_q / attn_k: noise moves the scores s = q·k/√d by Var(Δs) = Σ_i n_i·E[k_i²]/d, which moves the
  attention output by about Var(Δs)·κ·E[v²] per dimension (κ = 1 − Σ p², the spread of attention;
  taken as 1/2, between a one-hot and a uniform pattern) before W_o; with per-head q/k norms (Qwen3,
  Gemma 3) the noise is relative to the pre-norm rms and the scores use the norms' γ².
- Noise N entering a residual stream of energy R_l (Σ of the per-channel energies) is a relative
  perturbation N/R_l of everything later layers read; if each later layer passes that relative
  perturbation to its own output, the final stream carries N·R_L/R_l, i.e. the relative noise
  N/R_l. The final normalised hidden state then perturbs each logit by that fraction of the logits'
  energy E_logit = mean_v Σ_j W_out[v, j]² x_j², and KL ≈ ½·Var(Δlogit): loss = ½·E_logit·gain·WE/R_l.
- output.weight: KL ≈ ½·(its WE with x = the final normalised hidden state)/n_vocab directly;
  token_embd: a row's error is a relative perturbation error/R_0 of the first residual stream
  (one-hot input: unweighted, averaged over the vocabulary).

Crude (independence, isotropy, a fixed κ, full propagation), but every factor comes from the model's
own weights and it ranks tensors by what their errors do downstream, which plain error cannot.
A tensor the walk does not reach (an unknown layout) gets the median scale of the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from quantpress.core.calibration.imatrix import Imatrix
from quantpress.core.calibration.weights import (
    _kv,
    _normalised,
    _Weights,
    activation_energy,
    activation_slope_energy,
    kv_heads_per_layer,
    weight_importance,
)
from quantpress.core.jobs import NEVER, CancelToken, Report, ignore

KAPPA = 0.5  # 1 - Σ p²: how spread the attention pattern is (0 one-hot, 1 uniform over many tokens)


@dataclass(frozen=True)
class Sensitivity:
    """``scale[name]``: expected KL-divergence per unit of importance-weighted squared error of that
    tensor; ``column_weights[name]``: the E[x²] per column its error is weighted with where the
    importance has no entry (output: the final hidden state; token_embd: ones)."""

    scale: dict[str, float]
    column_weights: dict[str, np.ndarray]


def estimate_sensitivity(tensors: Sequence[Any], read: Callable[[Any], Iterator[np.ndarray]],
                         kv: Sequence[tuple[str, Any, str]], arch: str, *, report: Report = ignore,
                         cancel: CancelToken = NEVER) -> tuple[Imatrix, Sensitivity]:
    """The weights-estimated importance (as weight_importance) and every tensor's sensitivity."""
    trace: dict[str, np.ndarray] = {}
    imatrix = weight_importance(tensors, read, kv, arch, report=report, cancel=cancel, trace=trace)
    w = _Weights(tensors, read, cancel, lambda name: None)
    names = [t.name for t in tensors]
    n_head = int(_kv(kv, arch, "attention.head_count") or 1)
    scale: dict[str, float] = {}
    columns: dict[str, np.ndarray] = {}
    if "resid_final" not in trace:
        return imatrix, _with_fallback(names, scale, columns)
    out_name = "output.weight" if w.has("output.weight") else "token_embd.weight"
    x_out = _normalised(trace["resid_final"])
    if w.has("output_norm.weight"):
        x_out = w.vector("output_norm.weight") ** 2 * x_out
    out_energy = w.row_energy(out_name, x_out)
    e_logit = float(out_energy.mean())
    n_vocab = out_energy.shape[0]
    half = 0.5 * e_logit
    scale[out_name] = 0.5 / n_vocab
    columns[out_name] = x_out.astype(np.float32)
    r0 = float(trace["blk.0.resid_attn"].sum())
    embd = 0.5 * e_logit / (n_vocab * r0)  # per unit of unweighted error, averaged over the rows
    if out_name == "token_embd.weight":
        # Tied: one matrix read both ways, its error weighted by x_out; unweighted ≈ weighted / mean(x_out).
        scale[out_name] += embd / max(float(np.mean(x_out)), 1e-30)
    else:
        scale["token_embd.weight"] = embd
        columns["token_embd.weight"] = np.ones(w.columns("token_embd.weight"), np.float32)
    n_layers = sum(1 for n in names if n.endswith(".attn_norm.weight"))
    kv_heads = kv_heads_per_layer(kv, arch, n_layers, n_head)
    for i in range(n_layers):
        cancel.raise_if_cancelled()
        _block(w, trace, f"blk.{i}.", half, n_head, kv_heads[i], arch, scale)
    return imatrix, _with_fallback(names, scale, columns)


def _column_energy(w: _Weights, name: str) -> np.ndarray:
    """Σ_k W[k, i]² per column i."""
    return np.asarray(w.column_mean_square(name)) * int(w.by_name[name].n_elements // w.columns(name))


def _block(w: _Weights, trace: dict[str, np.ndarray], blk: str, half: float, n_head: int, n_kv: int, arch: str,
           scale: dict[str, float]) -> None:
    r_attn = float(trace.get(blk + "resid_attn", np.zeros(1)).sum())
    o_name = blk + "attn_output.weight"
    if r_attn > 0 and w.has(o_name) and blk + "v" in trace:
        c_o = float(_column_energy(w, o_name).mean())
        v_var = float(trace[blk + "v"].mean())
        n_gqa = max(1, n_head // max(1, n_kv))
        base = half / r_attn
        scale[o_name] = base
        scale[blk + "attn_v.weight"] = base * n_gqa * c_o
        scale[blk + "attn_qkv.weight"] = base * n_gqa * c_o  # fused (Phi-3): counted as V, its largest path
        if blk + "q" in trace and blk + "k" in trace:
            q_var, k_var = float(trace[blk + "q"].mean()), float(trace[blk + "k"].mean())
            q_rel = k_rel = 1.0  # noise relative to the pre-norm size (1: no per-head norm)
            if w.has(blk + "attn_q_norm.weight"):
                q_rel, q_var = _per_head_norm(w, blk + "attn_q_norm.weight", q_var)
            if w.has(blk + "attn_k_norm.weight"):
                k_rel, k_var = _per_head_norm(w, blk + "attn_k_norm.weight", k_var)
            scale[blk + "attn_q.weight"] = base * KAPPA * k_var * v_var * c_o * q_rel
            scale[blk + "attn_k.weight"] = base * KAPPA * n_gqa * q_var * v_var * c_o * k_rel
    r_ffn = float(trace.get(blk + "resid_ffn", np.zeros(1)).sum())
    d_name = blk + "ffn_down.weight"
    if r_ffn > 0 and w.has(d_name) and blk + "up" in trace:
        base = half / r_ffn
        c_down = _column_energy(w, d_name)
        gate, up = trace[blk + "gate"], trace[blk + "up"]
        scale[d_name] = base
        scale[blk + "ffn_up.weight"] = base * float(np.mean(activation_energy(np.sqrt(gate), arch) * c_down))
        scale[blk + "ffn_gate.weight"] = base * float(np.mean(activation_slope_energy(np.sqrt(gate), arch) * up * c_down))


def _per_head_norm(w: _Weights, name: str, var: float) -> tuple[float, float]:
    """(noise factor γ²/E[pre-norm²], energy after the norm γ²) of a per-head RMS norm."""
    g2 = float(np.mean(w.vector(name) ** 2))
    return g2 / max(var, 1e-30), g2


def _with_fallback(names: Sequence[str], scale: dict[str, float], columns: dict[str, np.ndarray]) -> Sensitivity:
    known = [v for v in scale.values() if v > 0]
    median = float(np.median(known)) if known else 1.0
    out = {n: scale.get(n, median) for n in names}
    return Sensitivity(out, columns)
