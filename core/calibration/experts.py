"""Routed experts in the calibration pass: per-expert statistics over exactly the tokens the router
sends to each expert, as llama.cpp's imatrix tool records them for ``blk.N.ffn_{gate,up,down}_exps``.

transformers 5 holds a layer's routed experts as one module with fused 3-D parameters (e.g.
``experts.gate_up_proj`` [E, 2F, D], ``experts.down_proj`` [E, D, F]), called by its MoE block as
``experts(hidden [T, D], top_k_index [T, K], top_k_weights [T, K])``, so hooks on ``nn.Linear`` never
see them. A forward pre-hook on that module sees the router's choice; for each expert it adds
Σ x² per column over the tokens routed to it (the input of gate and up) and Σ h² of the expert's
intermediate activation h (the input of down), recomputed from the expert's own weights with the
model's own activation. Shared experts are ordinary ``nn.Linear`` MLPs (core/calibration/collect.py).

``FAMILIES``: one row per transformers experts class (the module class is what the hook finds, so
the row also says how the family's checkpoints store experts, for loading them one layer at a time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


def _act_times_up(module: Any, x: Any, e: int) -> Any:
    """act(gate) * up with gate_up_proj [E, 2F, D], gate rows first (Qwen/Mixtral/OLMoE/GLM/DeepSeek)."""
    import torch

    gate, up = torch.nn.functional.linear(x, module.gate_up_proj[e]).chunk(2, dim=-1)
    return module.act_fn(gate) * up


def _gptoss_glu(module: Any, x: Any, e: int) -> Any:
    """gpt-oss: gate_up_proj [E, D, 2F] (+ bias), gate and up interleaved, clamped SwiGLU; the
    model's own ``_apply_gate`` so the formula is exactly transformers'."""
    return module._apply_gate(x @ module.gate_up_proj[e] + module.gate_up_proj_bias[e])


@dataclass(frozen=True)
class ExpertFamily:
    """How one transformers 5.25 experts class computes and how its family's checkpoints store it."""

    intermediate: Callable[[Any, Any, int], Any]  # (module, tokens [n, D], expert) -> h [n, F]
    transposed: bool = False  # gate_up_proj is [E, D, 2F] (gpt-oss) rather than [E, 2F, D]
    # Names of gate, up, down per expert in the checkpoints save_pretrained writes
    # (``<block>.experts.<e>.<name>.weight``); None: stored fused as transformers holds them.
    per_expert: tuple[str, str, str] | None = ("gate_proj", "up_proj", "down_proj")
    # Module path renames from the checkpoint to transformers 5 (transformers' conversion_mapping.py).
    renames: tuple[tuple[str, str], ...] = ()

    def widths(self, module: Any) -> tuple[int, int, int]:
        """(n_expert, hidden D, intermediate F) of ``module``."""
        e, a, b = (int(n) for n in module.gate_up_proj.shape)
        return (e, a, b // 2) if self.transposed else (e, b, a // 2)


_ROWS = ExpertFamily(_act_times_up)
FAMILIES: dict[str, ExpertFamily] = {
    "Qwen3MoeExperts": _ROWS,
    "Qwen2MoeExperts": _ROWS,
    "OlmoeExperts": _ROWS,
    "Glm4MoeExperts": _ROWS,
    "DeepseekV3Experts": _ROWS,
    "Qwen3NextExperts": _ROWS,
    "Qwen3_5MoeExperts": _ROWS,
    "MixtralExperts": ExpertFamily(_act_times_up, per_expert=("w1", "w3", "w2"),
                                   renames=((".block_sparse_moe.", ".mlp."),)),
    "GptOssExperts": ExpertFamily(_gptoss_glu, transposed=True, per_expert=None),
}

# GGUF tensors fed by the experts' input (gate, up) and by their intermediate activation (down).
INPUT_TENSORS = ("ffn_gate_exps", "ffn_up_exps")
INTERMEDIATE_TENSOR = "ffn_down_exps"


def experts_modules(layer: Any) -> Iterator[tuple[str, Any, ExpertFamily]]:
    """(name relative to the layer, module, family) of every routed-experts module in ``layer``."""
    for name, module in layer.named_modules():
        family = FAMILIES.get(type(module).__name__)
        if family is not None:
            yield name, module, family


def unknown_experts(layer: Any) -> list[str]:
    """Class names of modules holding stacked 3-D expert weights that ``FAMILIES`` does not know."""
    return sorted({type(m).__name__ for _, m in layer.named_modules()
                   if type(m).__name__ not in FAMILIES and getattr(getattr(m, "gate_up_proj", None), "ndim", 0) == 3})


class ExpertStats:
    """A forward pre-hook on one experts module: per expert, Σ x² of its routed tokens' inputs (D),
    Σ h² of its intermediate activation (F) and the number of tokens (float64 on the module's device)."""

    def __init__(self, module: Any, family: ExpertFamily) -> None:
        import torch

        self.family = family
        n_expert, hidden, inter = family.widths(module)
        device = module.gate_up_proj.device
        self.input_sums = torch.zeros(n_expert, hidden, dtype=torch.float64, device=device)
        self.inter_sums = torch.zeros(n_expert, inter, dtype=torch.float64, device=device)
        self.counts = torch.zeros(n_expert, dtype=torch.int64, device=device)
        self._handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        import torch

        values = list(args) + list(kwargs.values())  # (hidden, top_k_index, top_k_weights) in every family
        x, index = values[0].detach(), values[1].detach()
        x = x.reshape(-1, x.shape[-1])
        index = index.reshape(x.shape[0], -1)
        n_expert = self.counts.shape[0]
        with torch.no_grad():
            for e in torch.unique(index).tolist():
                if not 0 <= e < n_expert:  # transformers' masking index for experts on other devices
                    continue
                rows = (index == e).any(dim=-1).nonzero().reshape(-1)
                xe = x[rows]
                x64 = xe.to(torch.float64)
                self.input_sums[e] += (x64 * x64).sum(dim=0)
                h = self.family.intermediate(module, xe, e).to(torch.float64)
                self.inter_sums[e] += (h * h).sum(dim=0)
                self.counts[e] += rows.numel()

    def detach(self) -> None:
        self._handle.remove()

    def entries(self, block: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """GGUF name -> (sums float32 [E, n], counts float32 [E]) for decoder block ``block``."""
        counts = self.counts.cpu().numpy().astype(np.float32)
        inputs = self.input_sums.to("cpu").numpy().astype(np.float32)
        out = {f"blk.{block}.{t}.weight": (inputs, counts) for t in INPUT_TENSORS}
        out[f"blk.{block}.{INTERMEDIATE_TENSOR}.weight"] = (self.inter_sums.to("cpu").numpy().astype(np.float32), counts)
        return out


def fuse_checkpoint_experts(state: dict[str, Any], module: Any) -> dict[str, Any]:
    """A layer's checkpoint tensors (names relative to the layer) in the names and layout the layer
    ``module`` holds: per-expert ``experts.<e>.<proj>.weight`` stacked into the fused parameters
    (gate_up_proj = [gate; up] per expert), the family's module renames applied. Unchanged when the
    checkpoint already stores them fused."""
    import torch

    for path, _, family in experts_modules(module):
        if family.per_expert is None or f"{path}.gate_up_proj" in state:
            continue
        for old, new in family.renames:
            state = {("." + k).replace(old, new)[1:]: v for k, v in state.items()}
        gate, up, down = family.per_expert
        n_expert = family.widths(module.get_submodule(path))[0]
        names = [[f"{path}.{e}.{p}.weight" for p in (gate, up, down)] for e in range(n_expert)]
        if not all(n in state for row in names for n in row):
            continue  # the caller reports the missing fused parameters by name
        state[f"{path}.gate_up_proj"] = torch.stack([torch.cat([state[g], state[u]], dim=0) for g, u, _ in names])
        state[f"{path}.down_proj"] = torch.stack([state[d] for _, _, d in names])
        for row in names:
            for n in row:
                del state[n]
    return state


def by_block(uncovered: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """``Imatrix.experts_without_tokens`` grouped by decoder block ("blk.3" -> experts): gate, up and
    down of a layer share the router's choice, so they name the same experts."""
    blocks: dict[str, set[int]] = {}
    for name, experts in uncovered.items():
        blocks.setdefault(".".join(name.split(".")[:2]), set()).update(experts)
    order = sorted(blocks, key=lambda b: (len(b), b))  # blk.2 before blk.10
    return {b: tuple(sorted(blocks[b])) for b in order}


def fallback_note(blocks: Mapping[str, tuple[int, ...]]) -> str:
    """One line naming the routed experts that got no calibration tokens (``by_block``'s form)."""
    listed = "; ".join(f"{b}: {', '.join(map(str, e))}" for b, e in blocks.items())
    return (f"{sum(len(e) for e in blocks.values())} routed expert(s) got no calibration tokens ({listed}); "
            "their importance is the mean over the experts of the same layer that did")
