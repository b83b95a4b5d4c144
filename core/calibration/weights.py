"""Importance weights without calibration text: the activation statistics a model's own weights imply.

An imatrix holds, per linear layer, the mean x² of each input column. Without running the model we
can still estimate it by pushing *variances* (not values) through the network, assuming the
normalised residual stream is otherwise isotropic and the streams of a layer are independent:

- residual energy per channel starts as the embedding matrix's mean square per column (times the
  architecture's embedding scale², Gemma's sqrt(n_embd));
- q/k/v input = RMSNorm γ ⊙ (residual / rms): E[x_j²] = γ_j² · r_j / mean(r);
- attention output (o input, per head dim) ≈ the variance of the V rows it mixes:
  Σ_j W_v[i, j]² E[x_j²], repeated over the heads sharing a KV head (GQA);
- the o output adds Σ_i W_o[j, i]² var_i to the residual (after a post-norm, when the architecture
  has one, the norm's γ² sets its scale instead);
- FFN: the same for gate/up from γ_ffn; down's input is E[act(g)²]·E[u²] with g ~ N(0, var_g), the
  expectation taken by Gauss–Hermite quadrature; its output adds to the residual like o's.

The result is crude next to a calibration run but costs one read of the weights and no forward pass,
and it knows which columns carry the big activations: on the demo model it cut the KL-divergence of
Q4_0 by 18%, Q2_K by 17%, Q5_0 by 11% and Q4_K_M by 3% against plain rounding (BENCHMARKS.md,
"GGUF conversion", the "quantpress" and "quantpress none" columns). A tensor the estimate does not
cover (unknown layout) gets none.

``weight_importance(tensors, read, kv, arch)`` -> Imatrix (n_tokens 0, dataset "weights").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from quantpress.core.calibration.imatrix import Imatrix
from quantpress.core.jobs import NEVER, CancelToken, Progress, Report, ignore

DATASET = "weights"
_ZS, _WS = np.polynomial.hermite_e.hermegauss(48)
_WS = _WS / _WS.sum()


def _silu(z: np.ndarray) -> np.ndarray:
    return np.asarray(z / (1.0 + np.exp(-z)))


def _gelu_tanh(z: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z ** 3))))


# Architectures whose FFN gate uses GELU (tanh approximation); every other one here uses SiLU.
_GELU_ARCHES = frozenset({"gemma", "gemma2", "gemma3", "gemma4"})
# Architectures that multiply the token embeddings by sqrt(n_embd) before the first layer.
_SCALED_EMBEDDING = frozenset({"gemma", "gemma2", "gemma3", "gemma4"})


def activation_energy(std: np.ndarray, arch: str) -> np.ndarray:
    """E[act(g)²] for g ~ N(0, std²), per entry of ``std``. In chunks: the quadrature grid is 48
    float64 values per entry, and a MoE layer's stacked experts have E x F entries (128 x 1536 would
    be 75 MB per temporary)."""
    act = _gelu_tanh if arch in _GELU_ARCHES else _silu
    std = np.asarray(std, dtype=np.float64).reshape(-1)
    out = np.empty_like(std)
    for a in range(0, std.size, 8192):
        z = np.outer(std[a:a + 8192], _ZS)
        out[a:a + 8192] = (act(z) ** 2 * _WS).sum(axis=1)
    return out


def activation_slope_energy(std: np.ndarray, arch: str) -> np.ndarray:
    """E[act'(g)²] for g ~ N(0, std²), per entry of ``std`` (central difference of act)."""
    act = _gelu_tanh if arch in _GELU_ARCHES else _silu
    z, h = np.outer(np.asarray(std, dtype=np.float64), _ZS), 1e-3
    return np.asarray((((act(z + h) - act(z - h)) / (2 * h)) ** 2 * _WS).sum(axis=1))


def kv_heads_per_layer(kv: Sequence[tuple[str, Any, str]], arch: str, n_layers: int, n_head: int) -> list[int]:
    """KV heads of each layer: head_count_kv is one number, or one per layer (Gemma 4's global layers
    have fewer); n_head where the metadata says nothing."""
    value = _kv(kv, arch, "attention.head_count_kv")
    if isinstance(value, (list, tuple, np.ndarray)):
        heads = [int(h) or n_head for h in value]
        return heads + [n_head] * (n_layers - len(heads))
    return [int(value or n_head)] * n_layers


def _kv(kv: Sequence[tuple[str, Any, str]], arch: str, key: str) -> Any:
    for k, v, _ in kv:
        if k == f"{arch}.{key}":
            return v
    return None


class _Weights:
    """Row-wise energies of the model's tensors, read slab by slab (one tensor in memory at most)."""

    def __init__(self, tensors: Sequence[Any], read: Callable[[Any], Iterator[np.ndarray]],
                 cancel: CancelToken, tick: Callable[[str], None]) -> None:
        self.by_name = {t.name: t for t in tensors}
        self.read, self.cancel, self.tick = read, cancel, tick

    def has(self, name: str) -> bool:
        return name in self.by_name

    def columns(self, name: str) -> int:
        return int(self.by_name[name].shape[-1])

    def _blocks(self, name: str) -> Iterator[np.ndarray]:
        """Float32 row blocks of about 4 MiB: the temporaries below stay that small (the reader's
        slabs are up to convert.SLAB_BYTES, 16 MiB)."""
        self.tick(name)
        for x in self.read(self.by_name[name]):
            self.cancel.raise_if_cancelled()
            x = np.asarray(x, dtype=np.float32).reshape(-1, x.shape[-1])
            step = max(1, (4 << 20) // (4 * x.shape[1]))
            for a in range(0, x.shape[0], step):
                yield x[a:a + step]

    def vector(self, name: str) -> np.ndarray:
        return np.concatenate([b.reshape(-1) for b in self._blocks(name)]).astype(np.float64)

    def row_energy(self, name: str, col_weight: np.ndarray) -> np.ndarray:
        """Σ_j W[i, j]² · col_weight[j] for every row i."""
        w = col_weight.astype(np.float32)
        return np.concatenate([(b * b) @ w for b in self._blocks(name)]).astype(np.float64)

    def column_mean_square(self, name: str) -> np.ndarray:
        total = np.zeros(self.columns(name), dtype=np.float64)
        rows = 0
        for b in self._blocks(name):
            total += np.einsum("ij,ij->j", b, b)
            rows += b.shape[0]
        return total / max(rows, 1)


def _normalised(r: np.ndarray) -> np.ndarray:
    return r / max(float(r.mean()), 1e-30)


def _post_norm(w: _Weights, name: str, update: np.ndarray) -> np.ndarray:
    """A post-norm (Gemma) rescales a block's output to γ² per channel before the residual add."""
    if not w.has(name):
        return update
    scaled: np.ndarray = w.vector(name) ** 2 * _normalised(update)
    return scaled


# Tensors the estimate never reads: Q and K only feed the attention pattern, which it does not model
# (read only for the sensitivity trace), and the output head's input is the final residual.
_UNREAD = (".attn_q.weight", ".attn_k.weight")


def read_elements(tensors: Sequence[Any], *, with_trace: bool = False) -> int:
    """How many weights ``weight_importance`` reads (its share of a conversion's work, core/eta.py)."""
    return sum(math.prod(t.shape) for t in tensors
               if t.name != "output.weight" and (with_trace or not t.name.endswith(_UNREAD)))


def weight_importance(tensors: Sequence[Any], read: Callable[[Any], Iterator[np.ndarray]],
                      kv: Sequence[tuple[str, Any, str]], arch: str, *, report: Report = ignore,
                      cancel: CancelToken = NEVER, trace: dict[str, np.ndarray] | None = None) -> Imatrix:
    """Estimated mean x² per input column of every attention/FFN linear (see module docstring).

    tensors: objects with ``.name`` (GGUF names) in file order; read(tensor) yields float32 row slabs.
    kv: the source's GGUF metadata (head counts). Layers the estimate cannot follow get no entry.
    trace: when given, receives the propagated energies the sensitivity estimate needs
    (core/calibration/sensitivity.py): per block ``<blk>resid_attn``/``<blk>resid_ffn`` (residual
    energy per channel entering each sub-block), ``<blk>q``/``<blk>k``/``<blk>v`` (E[out²] per row),
    ``<blk>gate``/``<blk>up``; and ``resid_final``."""
    names = [t.name for t in tensors]
    n_layers = sum(1 for n in names if n.endswith(".attn_norm.weight"))
    sizes = {t.name: math.prod(t.shape) for t in tensors}
    total = max(1, read_elements(tensors, with_trace=trace is not None))
    done = [0]

    def tick(name: str) -> None:  # progress in weights read: an FFN matrix weighs more than a norm
        report(Progress("importance", min(done[0] / total, 0.999), f"importance: {name}", done[0], total))
        done[0] += sizes[name]  # the tensor name must fit a 40-column progress line

    w = _Weights(tensors, read, cancel, tick)
    means: dict[str, np.ndarray] = {}
    if not w.has("token_embd.weight") or not n_layers:
        return _imatrix(means)
    n_head = int(_kv(kv, arch, "attention.head_count") or 0)
    kv_heads = kv_heads_per_layer(kv, arch, n_layers, n_head)
    r = w.column_mean_square("token_embd.weight")
    if arch in _SCALED_EMBEDDING:
        r = r * r.shape[0]
    for i in range(n_layers):
        _record(trace, f"blk.{i}.resid_attn", r)
        r = _attention(w, means, f"blk.{i}.", r, n_head, kv_heads[i], trace)
        _record(trace, f"blk.{i}.resid_ffn", r)
        r = _ffn(w, means, f"blk.{i}.", r, arch, trace)
    _record(trace, "resid_final", r)
    return _imatrix(means)


def _attention(w: _Weights, means: dict[str, np.ndarray], blk: str, r: np.ndarray, n_head: int,
               n_kv: int, trace: dict[str, np.ndarray] | None) -> np.ndarray:
    if not w.has(blk + "attn_norm.weight") or not n_head:
        return r
    x = w.vector(blk + "attn_norm.weight") ** 2 * _normalised(r)
    fused = blk + "attn_qkv.weight"
    for part in ("attn_q", "attn_k", "attn_v"):
        if w.has(f"{blk}{part}.weight"):
            means[f"{blk}{part}.weight"] = x
    if w.has(fused):
        means[fused] = x
        v_var = w.row_energy(fused, x)
    elif w.has(blk + "attn_v.weight"):
        v_var = w.row_energy(blk + "attn_v.weight", x)
    else:
        return r
    _record(trace, blk + "v", v_var)
    if trace is not None and not w.has(fused):  # q/k energies: how far their errors move attention scores
        for part in ("q", "k"):
            if w.has(f"{blk}attn_{part}.weight"):
                trace[blk + part] = w.row_energy(f"{blk}attn_{part}.weight", x)
    o_name = blk + "attn_output.weight"
    # fused rows are [q (n_head); k (n_kv); v (n_kv)] heads, V the last block
    head_dim = v_var.shape[0] // (n_head + 2 * n_kv if w.has(fused) else n_kv)
    if not w.has(o_name) or w.columns(o_name) != n_head * head_dim:
        return r
    v_var = v_var[-n_kv * head_dim:]
    cols = np.arange(n_head * head_dim)
    o_in = v_var[(cols // head_dim) // max(1, n_head // n_kv) * head_dim + cols % head_dim]
    means[o_name] = o_in
    out: np.ndarray = r + _post_norm(w, blk + "post_attention_norm.weight", w.row_energy(o_name, o_in))
    return out


def _ffn(w: _Weights, means: dict[str, np.ndarray], blk: str, r: np.ndarray, arch: str,
         trace: dict[str, np.ndarray] | None) -> np.ndarray:
    if w.has(blk + "ffn_norm.weight") and w.has(blk + "ffn_up_exps.weight"):
        return _moe_ffn(w, means, blk, r, arch)
    if not w.has(blk + "ffn_norm.weight") or not w.has(blk + "ffn_up.weight"):
        return r
    x = w.vector(blk + "ffn_norm.weight") ** 2 * _normalised(r)
    up = w.row_energy(blk + "ffn_up.weight", x)
    means[blk + "ffn_up.weight"] = x
    if w.has(blk + "ffn_gate.weight"):
        means[blk + "ffn_gate.weight"] = x
        gate = w.row_energy(blk + "ffn_gate.weight", x)
    else:  # fused gate_up (Phi-3): gate rows first
        gate, up = up[: up.shape[0] // 2], up[up.shape[0] // 2:]
    _record(trace, blk + "gate", gate)
    _record(trace, blk + "up", up)
    down_in = activation_energy(np.sqrt(gate), arch) * up
    d_name = blk + "ffn_down.weight"
    if not w.has(d_name):
        return r
    means[d_name] = down_in
    out: np.ndarray = r + _post_norm(w, blk + "post_ffw_norm.weight", w.row_energy(d_name, down_in))
    return out


def _moe_ffn(w: _Weights, means: dict[str, np.ndarray], blk: str, r: np.ndarray, arch: str) -> np.ndarray:
    """Routed experts (ffn_{gate,up,down}_exps, [E, F, D]) and an optional shared expert (*_shexp).
    Every expert sees the same normalised input, so gate/up share one importance vector; down gets
    one row per expert (its own input energy), as a llama.cpp imatrix holds stacked experts. The
    residual gains the mean expert output energy (the router's top-k weights
    sum to about 1) plus the shared expert's, computed like a dense FFN."""
    x = w.vector(blk + "ffn_norm.weight") ** 2 * _normalised(r)
    update = np.zeros_like(r)
    for suffix in ("exps", "shexp"):
        gate_n, up_n, down_n = (f"{blk}ffn_{p}_{suffix}.weight" for p in ("gate", "up", "down"))
        if not (w.has(gate_n) and w.has(up_n) and w.has(down_n)):
            continue
        n_expert = int(w.by_name[up_n].shape[0]) if suffix == "exps" else 1
        means[gate_n] = means[up_n] = x
        gate = w.row_energy(gate_n, x).reshape(n_expert, -1)
        up = w.row_energy(up_n, x).reshape(n_expert, -1)
        down_in = activation_energy(np.sqrt(gate.reshape(-1)), arch).reshape(n_expert, -1) * up
        means[down_n] = down_in if suffix == "exps" else down_in[0]
        out = w.row_energy(down_n, down_in.mean(axis=0))  # one column weighting for every expert's rows
        update += out.reshape(n_expert, -1).mean(axis=0)
    return np.asarray(r + _post_norm(w, blk + "post_ffw_norm.weight", update))


def _record(trace: dict[str, np.ndarray] | None, key: str, value: np.ndarray) -> None:
    if trace is not None:
        trace[key] = value


def _imatrix(means: dict[str, np.ndarray]) -> Imatrix:
    """2-D entries (n_expert, n_per_row) are per-expert rows, as llama.cpp stores stacked experts."""
    sums = {k: np.asarray(v, dtype=np.float32).reshape(-1 if np.ndim(v) == 2 else 1, np.shape(v)[-1])
            for k, v in means.items()}
    counts = {k: np.ones(v.shape[0], dtype=np.float32) for k, v in sums.items()}
    return Imatrix(sums, counts, datasets=(DATASET,), n_tokens=0)
