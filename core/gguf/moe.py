"""Mixture-of-experts facts computed from GGUF tensor names and shapes (no weights read).

Expert tensors are the stacked ``blk.N.ffn_{gate,up,down}_exps`` (and their biases), numpy shape
[n_expert, rows, cols]: one slice per expert. Everything else (attention, routers, shared experts,
embeddings) is "shared": every token uses it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


def is_expert_tensor(name: str) -> bool:
    """A routed-expert tensor (gguf-py's get_total_parameter_count test: '_exps.' in the name)."""
    return "_exps." in name


def is_routed_expert(name: str) -> bool:
    """A routed-expert tensor under GGUF names (``ffn_*_exps``) or Hugging Face names (one
    ``...experts.<e>.<proj>`` per expert, or transformers 5's stacked ``...experts.gate_up_proj``);
    shared experts (``shared_expert``, ``*_shexp``) are not routed."""
    return "_exps." in name or ".experts." in name


def active_params(shapes: Iterable[tuple[str, tuple[int, ...]]], n_expert: int, n_used: int) -> int:
    """Parameters one token runs through: everything but the routed experts, plus n_used/n_expert
    of those (any naming, see is_routed_expert)."""
    shared = routed = 0
    for name, shape in shapes:
        if is_routed_expert(name):
            routed += math.prod(shape)
        else:
            shared += math.prod(shape)
    return shared + (routed * n_used // n_expert if n_expert else routed)


@dataclass(frozen=True)
class ParamCounts:
    """Parameters split the way gguf-py counts them for ``general.size_label`` ("8x7B")."""

    total: int
    shared: int
    per_expert: int  # one expert's parameters summed over all layers
    n_expert: int  # 0 for a dense model

    def active(self, n_used: int) -> int:
        """Parameters one token runs through: the shared ones and ``n_used`` experts per layer."""
        return self.shared + self.per_expert * n_used if self.n_expert else self.total

    @property
    def size_label(self) -> str:
        import gguf

        return str(gguf.size_label(self.total, self.shared, self.per_expert, self.n_expert))


def param_counts(shapes: Iterable[tuple[str, tuple[int, ...]]]) -> ParamCounts:
    """(name, numpy-order shape) pairs -> counts, following gguf-py's GGUFWriter.get_total_parameter_count."""
    total = shared = per_expert = expert_sum = n_expert_tensors = 0
    for name, shape in shapes:
        size = math.prod(shape)
        total += size
        if is_expert_tensor(name) and len(shape) >= 3:
            n = shape[-2] if name.endswith(".bias") else shape[-3]
            per_expert += size // n
            expert_sum += n
            n_expert_tensors += 1
        else:
            shared += size
    return ParamCounts(total, shared, per_expert, expert_sum // n_expert_tensors if n_expert_tensors else 0)
