"""The two AWQ searches on one decoder layer, and folding the scales into the previous op.

Scale search (AutoAWQ ``_search_best_scale``, duo scaling): x̄ = mean |x| per input channel, w̄ =
group-normalised mean |w| per input channel; for r = k / n_grid (k = 0..n_grid-1, r=0 is plain
RTN) s = x̄^r / (w̄^(1-r) + 1e-4), normalised by sqrt(max·min); each linear of the group gets
W <- Q(W·s) / s; loss = mean squared difference of the inspected module's output; keep the best.
Clip search (AutoAWQ ``_compute_best_clip``): per (output row, group), shrink the symmetric range
max|w|·(1 - i/n_grid), i < n_grid·max_shrink, keeping what minimises the error of the group's
partial dot products on ~512 input tokens. Everything in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from quantpress.core.awq.groups import ScaleGroup
from quantpress.core.awq.quantizer import fake_quantize

N_GRID = 20
CLIP_MAX_SHRINK = 0.5
CLIP_TOKENS = 512


def _forward(module: Any, x: Any, kwargs: dict[str, Any], is_attention: bool) -> Any:
    if is_attention:
        out = module(hidden_states=x, **kwargs)
        return out[0] if isinstance(out, tuple) else out
    return module(x)


def weight_stat(weights: Sequence[Any], group_sizes: Sequence[int]) -> Any:
    """w̄: |w| / max|w| of its group, averaged over all output rows of the group's linears."""
    import torch

    parts = []
    for w, gs in zip(weights, group_sizes, strict=True):
        g = w.abs().reshape(-1, gs)
        parts.append((g / (g.amax(dim=1, keepdim=True) + 1e-6)).reshape(w.shape))
    return torch.cat(parts, dim=0).mean(dim=0)


def search_scale(layer: Any, group: ScaleGroup, inputs: Sequence[Any], x_mean: Any, kwargs: dict[str, Any],
                 group_sizes: dict[str, int], *, n_grid: int = N_GRID, duo: bool = True) -> tuple[Any, float, float]:
    """Best per-channel scale for ``group`` -> (s, best ratio, loss reduction vs r=0 as a fraction)."""
    import torch

    linears = [layer.get_submodule(n) for n in group.linears]
    module = layer.get_submodule(group.inspect)
    is_attention = not isinstance(module, torch.nn.Linear) and group.inspect.endswith("attn")
    originals = [lin.weight.detach().clone() for lin in linears]
    sizes = [group_sizes[n] for n in group.linears]
    w_mean = weight_stat(originals, sizes)
    with torch.no_grad():
        refs = [_forward(module, x, kwargs, is_attention) for x in inputs]
        best: tuple[float, float, Any] = (float("inf"), 0.0, None)
        first_loss = None
        for k in range(n_grid):
            r = k / n_grid
            s = (x_mean.pow(r) / (w_mean.pow(1 - r) + 1e-4) if duo else x_mean.pow(r)).clamp(min=1e-4)
            s = s / (s.max() * s.min()).sqrt()
            s = torch.where(torch.isfinite(s), s, torch.ones_like(s))
            for lin, w, gs in zip(linears, originals, sizes, strict=True):
                lin.weight.copy_(fake_quantize(w * s, gs) / s)
            loss = 0.0
            for x, ref in zip(inputs, refs, strict=True):
                loss += float((ref - _forward(module, x, kwargs, is_attention)).float().pow(2).mean())
            if first_loss is None:
                first_loss = loss
            if loss < best[0]:
                best = (loss, r, s.clone())
        for lin, w in zip(linears, originals, strict=True):
            lin.weight.copy_(w)
    if best[2] is None:
        raise FloatingPointError(f"no finite loss in the scale search for {', '.join(group.linears)}")
    gain = 0.0 if not first_loss else 1.0 - best[0] / first_loss
    return best[2], best[1], gain


def apply_scale(layer: Any, group: ScaleGroup, s: Any, norm_offset: float) -> None:
    """Fold 1/s into ``group.prev`` and s into the group's linears (exact in full precision)."""
    import torch

    prev = layer.get_submodule(group.prev)
    with torch.no_grad():
        if isinstance(prev, torch.nn.Linear):
            prev.weight[-s.numel():].div_(s.view(-1, 1))
            if prev.bias is not None:
                prev.bias[-s.numel():].div_(s)
        else:  # RMSNorm: y = x̂ · (offset + w)
            prev.weight.copy_((prev.weight + norm_offset) / s - norm_offset)
        for name in group.linears:
            layer.get_submodule(name).weight.mul_(s.view(1, -1))


def search_clip(w: Any, x: Any, group_size: int, *, n_grid: int = N_GRID, max_shrink: float = CLIP_MAX_SHRINK,
                rows_per_batch: int = 512) -> Any:
    """Best symmetric clip value per (output row, group): float32 (N, G). ``x``: (tokens, K)."""
    import torch

    n, k = w.shape
    g = k // group_size
    step = max(1, x.shape[0] // CLIP_TOKENS)
    xs = x[::step][:CLIP_TOKENS].float().reshape(-1, g, group_size).transpose(0, 1)  # (G, T, gs)
    best_all = []
    with torch.no_grad():
        for r0 in range(0, n, rows_per_batch):
            wb = w[r0:r0 + rows_per_batch].float()
            wg = wb.reshape(-1, g, group_size)  # (n_b, G, gs)
            org_max = wg.abs().amax(dim=2)  # (n_b, G)
            best_err = torch.full_like(org_max, float("inf"))
            best_max = org_max.clone()
            for i in range(int(max_shrink * n_grid)):
                max_val = org_max * (1 - i / n_grid)
                clipped = torch.maximum(torch.minimum(wg, max_val[..., None]), -max_val[..., None])
                delta = fake_quantize(clipped.reshape(wb.shape), group_size).reshape(wg.shape) - wg
                partial = torch.bmm(xs, delta.permute(1, 2, 0))  # (G, T, n_b)
                err = partial.pow(2).mean(dim=1).T  # (n_b, G)
                better = err < best_err
                best_err = torch.where(better, err, best_err)
                best_max = torch.where(better, max_val, best_max)
            best_all.append(best_max)
    return torch.cat(best_all, dim=0)


def apply_clip(w: Any, max_val: Any, group_size: int) -> Any:
    """``w`` clamped to ±max_val per (row, group), same shape."""
    import torch

    wg = w.reshape(w.shape[0], -1, group_size)
    out = torch.maximum(torch.minimum(wg, max_val[..., None]), -max_val[..., None])
    return out.reshape(w.shape)
