"""gpt-oss (GptOssForCausalLM; llama.cpp arch 'gpt-oss'): attention with q/k/v/o biases and one learned
sink logit per head (attn_sinks), every other layer sliding-window (llama.cpp's graph fixes that
pattern, so only the window is written), YaRN RoPE, and every MLP a router with a bias over routed
experts with biases and a clamped SwiGLU (conversion/gpt_oss.py GptOssModel).

transformers keeps the experts fused and transposed: ``experts.gate_up_proj`` [E, D, 2F] with gate and
up *interleaved* column by column (gate = [..., ::2], up = [..., 1::2]) and ``experts.down_proj``
[E, F, D]; llama.cpp wants [E, F, D] gate/up and [E, D, F] down, so each expert matrix is read, its
columns picked and transposed (``expert_cols_t``). The released checkpoints store those experts as
MXFP4 ``*_blocks``/``*_scales`` (rows not transposed, gate/up rows interleaved): core/dequant reads
them as tensors labelled 'MXFP4', split by rows here, and written unchanged as MXFP4 where the mix
asks for it."""

from __future__ import annotations

from quantpress.core.dequant.mxfp4 import LABEL as MXFP4
from quantpress.core.gguf import arch
from quantpress.core.gguf.arch import KV, Config, Split, SplitPart


def _gate_up(config: Config, shape: tuple[int, ...]) -> list[SplitPart]:
    n_expert, n_embd, two_ff = shape
    half = (n_expert, two_ff // 2, n_embd)
    return [(".experts.gate_proj.weight", half, "expert_cols_t:0:2"),
            (".experts.up_proj.weight", half, "expert_cols_t:1:2")]


def _gate_up_bias(config: Config, shape: tuple[int, ...]) -> list[SplitPart]:
    half = (shape[0], shape[1] // 2)
    return [(".experts.gate_proj.bias", half, "cols:0:2"), (".experts.up_proj.bias", half, "cols:1:2")]


def _down(config: Config, shape: tuple[int, ...]) -> list[SplitPart]:
    n_expert, n_ff, n_embd = shape
    return [(".experts.down_proj.weight", (n_expert, n_embd, n_ff), "expert_cols_t:0:1")]


def _mxfp4(gate_up: bool) -> Split:
    """An MXFP4 checkpoint's experts as core/dequant presents them: [E, out, in] as stored (its
    ``_blocks``/``_scales`` read together), so no transpose; gate/up rows interleaved. The rows are
    picked expert by expert (``expert_rows_step``), which also lets MXFP4_MOE copy the blocks unchanged."""
    def parts(config: Config, shape: tuple[int, ...]) -> list[SplitPart]:
        n_expert, rows, cols = shape
        if not gate_up:
            return [(".experts.down_proj.weight", shape, "expert_rows_step:0:1")]
        half = (n_expert, rows // 2, cols)
        return [(".experts.gate_proj.weight", half, "expert_rows_step:0:2"),
                (".experts.up_proj.weight", half, "expert_rows_step:1:2")]

    return Split(".experts.gate_up_proj" if gate_up else ".experts.down_proj", parts, dtype=MXFP4)


def _rename(old: str, new: str) -> Split:
    return Split(old, lambda config, shape: [(new, shape, "")])


def _gptoss_kv(config: Config) -> list[KV]:
    return [("attention.sliding_window", int(config["sliding_window"]), "UINT32")]


SPEC = arch.ArchSpec(
    name="gptoss",
    gguf_arch="gpt-oss",
    hf_classes=("GptOssForCausalLM",),
    hparams=arch.TEXT_HPARAMS + arch.MOE_HPARAMS + (arch.HParam("expert_feed_forward_length",
                                                                ("intermediate_size",)),),
    extra_kv=_gptoss_kv,
    experts=arch.ExpertSpec(count_keys=("num_local_experts", "num_experts")),
    splits=(_mxfp4(True), _mxfp4(False), Split(".experts.gate_up_proj", _gate_up), Split(".experts.gate_up_proj_bias", _gate_up_bias),
            Split(".experts.down_proj", _down), _rename(".experts.down_proj_bias", ".experts.down_proj.bias"),
            _rename(".self_attn.sinks", ".self_attn.sinks.weight")),
)
