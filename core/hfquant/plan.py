"""Plans for quantized Hugging Face folders (FP8, GPTQ, NF4): which linears are quantized, every tensor
the output will hold, and the exact bytes of its weight files, from the safetensors headers alone.

Layout (like the AWQ writer): one safetensors shard per decoder layer, written as soon as that layer is
done, plus one for the rest (embeddings, final norm, lm_head) and ``model.safetensors.index.json``.
The shards' headers come from the same encoder the writer uses (safetensors_out.header), so
``HfQuantPlan.file_bytes`` is the size the writer produces; the writer refuses any tensor that differs
from its planned name, dtype or shape.

Which tensors are quantized: 2-D ``.weight`` tensors inside the decoder layers that are linear layers
(not norms, not an MoE router, whose few columns decide the routing), when the scheme accepts their
shape (group sizes must divide the input width); everything else is copied unchanged, lm_head included.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantpress.core.errors import InvalidInput, InvalidModel
from quantpress.core.hfquant.safetensors_out import Entry, file_bytes

_LAYER = re.compile(r"^(?P<prefix>(?:[\w]+\.)*?layers)\.(?P<index>\d+)\.")
_NOT_LINEAR = ("norm", "mlp.gate.weight", "router", "embed")

# (module name, (out, in), source dtype) -> the tensors stored for that module, or None (keep it as it is)
ModuleEntries = Callable[[str, tuple[int, int], str], tuple[Entry, ...] | None]


@dataclass(frozen=True)
class Scheme:
    """One output format: how a linear is stored, and config.json's quantization_config for the folder."""

    name: str
    module_entries: ModuleEntries
    quantization_config: Callable[[Sequence[str]], dict[str, Any]]  # from the quantized module names
    torch_dtype: str | None = None  # config.json torch_dtype of the output (None: the source's)


@dataclass(frozen=True)
class HfQuantPlan:
    source: str  # the model folder
    format: str
    quantized: tuple[str, ...]  # module names (without ".weight")
    kept: tuple[str, ...]  # 2-D layer weights left as they are (shape the scheme cannot take)
    shards: tuple[tuple[Entry, ...], ...]  # per decoder layer, then the rest
    sources: dict[str, str] = field(repr=False, default_factory=dict)  # source tensor name -> its shard file

    @property
    def shard_names(self) -> tuple[str, ...]:
        n = len(self.shards)
        return tuple(f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n))

    @property
    def file_bytes(self) -> int:
        """Bytes of the weight files (the shards); the index, config and tokenizer files come on top."""
        return sum(file_bytes(s) for s in self.shards)


def is_layer_linear(name: str, shape: Sequence[int]) -> bool:
    return (len(shape) == 2 and name.endswith(".weight") and _LAYER.match(name) is not None
            and not any(s in name for s in _NOT_LINEAR))


def layer_index(name: str) -> int | None:
    m = _LAYER.match(name)
    return int(m.group("index")) if m else None


def plan_hf_quant(model_dir: str | Path, scheme: Scheme) -> HfQuantPlan:
    """Plan ``scheme`` for the safetensors folder ``model_dir`` (headers only; no weight is read)."""
    from quantpress.core.gguf.source import list_hf_tensors

    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        raise InvalidModel(f"{folder}: no config.json; {scheme.name} needs a Hugging Face model folder")
    tensors = list_hf_tensors(folder)
    layers = [i for t in tensors if (i := layer_index(t.name)) is not None]
    if not layers:
        raise InvalidModel(f"{folder}: no decoder layers (model.layers.N.*) found; cannot make {scheme.name}")
    n_layers = max(layers) + 1
    per_shard: list[list[Entry]] = [[] for _ in range(n_layers + 1)]
    quantized: list[str] = []
    kept: list[str] = []
    sources: dict[str, str] = {}
    for t in sorted(tensors, key=lambda t: t.name):
        sources[t.name] = t.file
        i = layer_index(t.name)
        shard = per_shard[n_layers if i is None else i]
        stored = None
        if is_layer_linear(t.name, t.shape):
            module = t.name[: -len(".weight")]
            stored = scheme.module_entries(module, (int(t.shape[0]), int(t.shape[1])), t.dtype)
            (quantized if stored is not None else kept).append(module)
        if stored is None:
            if t.dtype not in ("F32", "F16", "BF16"):
                raise InvalidModel(f"{folder}: tensor {t.name} is {t.dtype}; {scheme.name} starts from float weights")
            stored = (Entry(t.name, t.dtype, tuple(t.shape)),)
        shard.extend(stored)
    if not quantized:
        raise InvalidInput(f"{folder.name}: no linear layer of this model fits {scheme.name} (input widths)")
    shards = tuple(tuple(sorted(s, key=lambda e: e.name)) for s in per_shard)
    return HfQuantPlan(str(folder), scheme.name, tuple(quantized), tuple(kept), shards, sources)


def _scheme_for(format_name: str, model_dir: str | Path) -> Scheme | None:
    """The scheme quantpress writes by default for a catalogue format (core/formats.py), or None."""
    if format_name == "FP8_E4M3":
        from quantpress.core.hfquant.fp8 import FP8_SCHEME

        return FP8_SCHEME
    if format_name == "GPTQ_INT4_G128":
        from quantpress.core.hfquant.gptq_export import gptq_scheme, model_group_size

        return gptq_scheme("compressed-tensors", model_group_size(model_dir))
    if format_name == "NF4_DQ":
        from quantpress.core.hfquant.nf4 import NF4_SCHEME

        return NF4_SCHEME
    return None


def planned_file_bytes(model_dir: str | Path | None, format_name: str) -> int | None:
    """Exact weight-file bytes of ``format_name`` for a local safetensors folder (None when quantpress does
    not write that format or the folder cannot be planned)."""
    from quantpress.core.errors import QuantpressError

    if model_dir is None:
        return None
    try:
        scheme = _scheme_for(format_name, model_dir)
        return None if scheme is None else plan_hf_quant(model_dir, scheme).file_bytes
    except (QuantpressError, ImportError):
        return None
