"""Collect an importance matrix by running the model over calibration text, layer by layer.

For every nn.Linear inside the decoder layers, accumulate Σ x² per input column of its input and
the number of tokens, exactly what llama.cpp's imatrix tool records for ``blk.*`` weights (it also
skips ``output.weight`` by default). Routed experts (transformers 5 keeps them as fused 3-D
parameters, not linears) get one row per expert over the tokens routed to it (experts.py). Memory: one decoder layer plus the calibration hidden states
(n_tokens · hidden_size · 4 bytes on CPU, e.g. 75 MB for 32k tokens of a 576-wide model).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from quantpress.core.calibration.experts import ExpertStats, experts_modules, unknown_experts
from quantpress.core.calibration.imatrix import Imatrix
from quantpress.core.calibration.layerwise import LayerwiseModel, run_layer
from quantpress.core.calibration.text import (
    Chunks,
    chunk_text,
    default_calibration_text,
    load_tokenizer,
    text_label,
)
from quantpress.core.errors import InvalidInput, InvalidModel, UnsupportedArchitecture
from quantpress.core.jobs import NEVER, CancelToken, Progress, Report, Throttle, ignore

DEFAULT_N_CTX = 512
DEFAULT_MAX_TOKENS = 32768  # 64 chunks of 512: the whole default text, ~1-3 min for a 135M model on 2 cores
DEFAULT_BATCH_CHUNKS = 4


def resolve_device(device: str) -> str:
    """'cpu', 'cuda' or 'auto' (CUDA when torch sees a GPU) -> a torch device string."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInput("device 'cuda' was asked for but torch sees no CUDA GPU; use --device cpu")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise InvalidInput(f"unknown device '{device}'; use cpu, cuda or auto")
    return device


def calibration_chunks(model_dir: Path, text: str | None, *, n_ctx: int, max_tokens: int | None,
                       min_chunks: int = 1) -> tuple[Chunks, str]:
    """Tokenized rows for ``model_dir`` and the text's label (default text when ``text`` is None)."""
    tokenizer = load_tokenizer(model_dir)
    body = default_calibration_text() if text is None else text
    chunks = chunk_text(tokenizer, body, n_ctx=n_ctx, max_tokens=max_tokens, min_chunks=min_chunks)
    return chunks, text_label(body, None if text is None else "user-text")


class _Accumulator:
    """Forward pre-hooks on a layer's linears: Σ x² per input column (float64) and token counts."""

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self._handles: list[Any] = []

    def attach(self, named_linears: list[tuple[str, Any]]) -> None:
        for name, module in named_linears:
            self._handles.append(module.register_forward_pre_hook(self._hook(name)))

    def _hook(self, name: str) -> Any:
        import torch

        def hook(_module: Any, args: tuple[Any, ...]) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).to(torch.float64)
            sq = (x * x).sum(dim=0)
            self.sums[name] = sq if name not in self.sums else self.sums[name] + sq
            self.counts[name] = self.counts.get(name, 0) + x.shape[0]

        return hook

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def _expert_hooks(lw: LayerwiseModel, index: int, layer: Any) -> list[ExpertStats]:
    """Per-expert statistics hooks on the layer's routed-experts modules (core/calibration/experts.py)."""
    unknown = unknown_experts(layer)
    if unknown:
        raise UnsupportedArchitecture(f"{lw.hf_class}: calibration does not know the routed experts module "
                                      f"{', '.join(unknown)}; convert with --calibration weights (the default) instead")
    return [ExpertStats(module, family) for _, module, family in experts_modules(layer)]


def compute_imatrix(model_dir: str | Path, text: str | None = None, *, n_ctx: int = DEFAULT_N_CTX,
                    max_tokens: int | None = DEFAULT_MAX_TOKENS, device: str = "auto",
                    batch_chunks: int = DEFAULT_BATCH_CHUNKS, dataset_name: str | None = None,
                    report: Report = ignore, cancel: CancelToken = NEVER) -> Imatrix:
    """Mean x² per input column of every decoder linear, keyed by GGUF tensor name
    (``blk.N.attn_q.weight``, fused ``attn_qkv``/``ffn_up`` for phi3). ``text`` None = the default
    calibration text. Runs one decoder layer at a time (see module docstring)."""
    import torch

    model_dir = Path(model_dir)
    device = resolve_device(device)
    throttle = Throttle(report)
    throttle(Progress("calibrate", 0.0, "tokenizing calibration text"))
    chunks, label = calibration_chunks(model_dir, text, n_ctx=n_ctx, max_tokens=max_tokens)
    lw = LayerwiseModel(model_dir, device=device, dtype=torch.float32 if device == "cpu" else torch.float16)
    ids = torch.tensor(chunks.rows, dtype=torch.long)
    batches = [ids[i:i + batch_chunks] for i in range(0, len(ids), batch_chunks)]
    total_steps = lw.n_layers * len(batches)
    start = time.monotonic()

    with torch.no_grad():
        hidden = [lw.embed(b).to("cpu") for b in batches]
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, np.ndarray] = {}
        for index in range(lw.n_layers):
            cancel.raise_if_cancelled()
            layer = lw.load_layer(index)
            acc = _Accumulator()
            linears = list(lw.linear_names(index, layer))
            acc.attach(linears)
            experts = _expert_hooks(lw, index, layer)
            try:
                for b, h in enumerate(hidden):
                    cancel.raise_if_cancelled()
                    kwargs = lw.layer_kwargs(h.shape[0], h.shape[1])[index]
                    out = run_layer(layer, h.to(device), kwargs)
                    if not torch.isfinite(out).all():
                        raise InvalidModel(f"{model_dir.name}: decoder layer {index} produced NaN/Inf activations "
                                           f"on the calibration text; the weights may be damaged")
                    hidden[b] = out.to("cpu")
                    step = index * len(batches) + b + 1
                    throttle(Progress("calibrate", step / total_steps, f"layer {index + 1}/{lw.n_layers}",
                                      step, total_steps))
            finally:
                acc.detach()
                for stats in experts:
                    stats.detach()
                lw.release(layer)
            for stats in experts:  # one row per routed expert, llama.cpp's layout for *_exps
                for ename, (expert_sums, expert_counts) in stats.entries(index).items():
                    sums[ename], counts[ename] = expert_sums, expert_counts
            for name, _ in linears:
                gname = lw.gguf_name(f"{lw.layer_prefix}.{index}.{name}.weight")
                if gname is None or name not in acc.sums:
                    continue
                sums[gname] = acc.sums[name].to(torch.float32).cpu().numpy().reshape(1, -1)
                counts[gname] = np.array([acc.counts[name]], np.float32)
    if not sums:
        raise InvalidModel(f"{model_dir}: no linear layers found to calibrate")
    throttle(Progress("calibrate", 1.0, f"done in {time.monotonic() - start:.0f} s", total_steps, total_steps))
    return Imatrix(sums, counts, (dataset_name or label,), len(chunks.rows), n_ctx, chunks.n_tokens,
                   source=str(model_dir))
