"""Routed experts stored fused and transposed, as the Llama 4 and Qwen3-VL-MoE releases hold them:
``experts.gate_up_proj`` [E, D, 2F] (gate columns 0..F, up columns F..2F) and ``experts.down_proj``
[E, F, D]. llama.cpp wants gate/up [E, F, D] and down [E, D, F] (numpy order), so each expert matrix
is read, its half of the columns picked and transposed (``expert_span_t``; ``expert_cols_t:0:1`` for
down), one expert at a time (conversion/llama.py Llama4Model, conversion/qwen3vl.py Qwen3VLMoeTextModel).

transformers 5.25 holds Qwen3-VL-MoE's experts untransposed in memory ([E, 2F, D], [E, D, F]), and
``save_pretrained`` of a model built from a config writes that layout; its loader reads either,
telling them apart by shape (core_model_loading.Transpose(check_dims=True): a stored shape equal to
the in-memory one is taken as is). ``in_memory_layout=True`` applies the same rule here, so both
checkpoints convert to the same GGUF. llama.cpp's converter assumes the release layout only.
"""

from __future__ import annotations

from quantpress.core.errors import InvalidModel
from quantpress.core.gguf.arch import Config, Split, SplitPart

GATE, UP, DOWN = ".experts.gate_proj.weight", ".experts.up_proj.weight", ".experts.down_proj.weight"


def transposed_expert_splits(width_key: str, *, in_memory_layout: bool = False) -> tuple[Split, Split]:
    """Splits for ``experts.gate_up_proj`` and ``experts.down_proj``; ``width_key``: the config key of
    the expert width F (the model width D is hidden_size)."""

    def dims(config: Config) -> tuple[int, int]:
        return int(config["hidden_size"]), int(config[width_key])

    def refuse(name: str, shape: tuple[int, ...], expected: str) -> InvalidModel:
        return InvalidModel(f"experts.{name} has shape {list(shape)}, expected {expected} (hidden_size D, "
                            f"{width_key} F from config.json); the checkpoint does not match its config")

    def gate_up(config: Config, shape: tuple[int, ...]) -> list[SplitPart]:
        (n_expert, rows, cols), (d, f) = shape, dims(config)
        out = (n_expert, f, d)
        if in_memory_layout and (rows, cols) == (2 * f, d):  # [E, 2F, D]: gate rows first
            return [(GATE, out, f"expert_rows:0:{f}"), (UP, out, f"expert_rows:{f}:{2 * f}")]
        if (rows, cols) == (d, 2 * f):
            return [(GATE, out, f"expert_span_t:0:{f}"), (UP, out, f"expert_span_t:{f}:{2 * f}")]
        raise refuse("gate_up_proj", shape, f"[E, D, 2F] = [{n_expert}, {d}, {2 * f}]")

    def down(config: Config, shape: tuple[int, ...]) -> list[SplitPart]:
        (n_expert, rows, cols), (d, f) = shape, dims(config)
        if in_memory_layout and (rows, cols) == (d, f):  # already llama.cpp's [E, D, F]
            return [(DOWN, shape, "")]
        if (rows, cols) == (f, d):
            return [(DOWN, (n_expert, d, f), "expert_cols_t:0:1")]
        raise refuse("down_proj", shape, f"[E, F, D] = [{n_expert}, {f}, {d}]")

    return Split(".experts.gate_up_proj", gate_up), Split(".experts.down_proj", down)
