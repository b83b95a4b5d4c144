"""The format catalogue: one table of every output format quantpress knows, with what the GUI shows
in tooltips and what the estimator needs (bits per weight, runtime, kind).

    FORMATS["Q4_K_M"].bits_per_weight, FORMATS["AWQ_INT4_G128"].runtime, gguf_formats()

``bits_per_weight`` is the nominal rate of the format's main weight type (for GGUF k-quant mixes:
the base type; the exact per-tensor mix and file size come from the converter's
``quantpress.core.gguf.plan.plan_conversion``, never from this number). ``quality`` quotes a
published measurement and says where it is from; it is a hint, not a measurement of your model.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FormatKind(str, enum.Enum):
    GGUF = "gguf"  # llama.cpp file (this app's chat runtime)
    AWQ = "awq"  # activation-aware int4 (transformers/vLLM, CUDA)
    GPTQ = "gptq"  # int4 via second-order rounding (transformers/vLLM, CUDA)
    BNB = "bitsandbytes"  # NF4 quantized at load time (transformers + bitsandbytes)
    FP8 = "fp8"  # 8-bit float weights (vLLM / transformers, Ada/Hopper GPUs)
    INT8 = "int8"  # 8-bit integer weights, 16-bit activations


# Source of every `quality` string below: KLD_SOURCE, the llama.cpp README it names.
KLD_SOURCE = "llama.cpp tools/perplexity README, Llama-3-8B, wikitext-2, no imatrix"


@dataclass(frozen=True)
class Format:
    """One catalogue row. ``quality_rank``: lower is closer to the original (used to rank
    recommendations; GGUF ranks follow the published KLD order)."""

    name: str
    kind: FormatKind
    bits_per_weight: float
    runtime: str
    explanation: str
    quality: str  # published hint, labelled with its source
    quality_rank: int
    gguf_type: str | None = None  # base GGML type for GGUF mixes
    group_size: int = 0  # quantization group (non-GGUF int formats)
    needs_gpu: bool = False  # the runtime only runs it on a (CUDA) GPU
    kld: float | None = None  # published mean KLD vs F16 (Llama-3-8B), when one exists
    moe_only: bool = False  # a mix that differs from Q8_0 only for mixture-of-experts models


def _kld(value: float, dppl: float) -> str:
    return f"KLD {value:.5f}, ΔPPL +{dppl:.4f} ({KLD_SOURCE})"


# The same README's rows for i-quant files made with an imatrix (its "WT 10m" rows).
IQKLD_SOURCE = KLD_SOURCE.replace("no imatrix", "imatrix from 10M wikitext tokens")


def _iq_kld(value: float, dppl: float) -> str:
    return f"KLD {value:.5f}, ΔPPL +{dppl:.4f} ({IQKLD_SOURCE})"


_LLAMA_CPP = "llama.cpp (llama-cpp-python, LM Studio, Ollama)"
_TRANSFORMERS = "transformers / vLLM on a CUDA GPU"

# One table. Rows are in quality order (best first) within each kind. The i-quants below 4 bits (IQ3_M ...
# IQ1_S: llama.cpp's IQ mixes, core/gguf/mixes_iq.py) need importance weights: from text, an imatrix, or
# quantpress's estimate from the weights; their ranks follow the published KLD where there is one (with
# imatrix, IQKLD_SOURCE) and the mix's size between those.
_ROWS: tuple[Format, ...] = (
    Format("F32", FormatKind.GGUF, 32.0, _LLAMA_CPP, "Full 32-bit floats: exact, twice the size of F16, only useful as a reference.", "lossless (reference)", 0, "F32", kld=0.0),
    Format("F16", FormatKind.GGUF, 16.0, _LLAMA_CPP, "16-bit floats: the original weights for most models, the quality reference.", "lossless for F16/BF16 sources (reference of the KLD table)", 1, "F16", kld=0.0),
    Format("BF16", FormatKind.GGUF, 16.0, _LLAMA_CPP, "bfloat16: same size as F16, keeps the range of BF16-trained weights exactly.", "lossless for BF16 sources", 1, "BF16", kld=0.0),
    Format("Q8_0", FormatKind.GGUF, 8.5, _LLAMA_CPP, "8-bit integers in blocks of 32 with one scale: near-lossless at half of F16.", _kld(0.00136, 0.0027), 2, "Q8_0", kld=0.00136),
    Format("Q6_K", FormatKind.GGUF, 6.5625, _LLAMA_CPP, "6-bit k-quant for every tensor: very close to the original.", _kld(0.00545, 0.0217), 3, "Q6_K", kld=0.00545),
    Format("Q5_K_M", FormatKind.GGUF, 5.5, _LLAMA_CPP, "5-bit k-quant mix; sensitive tensors (half of attn_v/ffn_down, output) get 6 bits.", _kld(0.01076, 0.0570), 4, "Q5_K", kld=0.01076),
    Format("Q5_K_S", FormatKind.GGUF, 5.5, _LLAMA_CPP, "5-bit k-quant for all layers (output 6-bit): slightly smaller than Q5_K_M.", _kld(0.01660, 0.1050), 5, "Q5_K", kld=0.01660),
    Format("Q5_0", FormatKind.GGUF, 5.5, _LLAMA_CPP, "Legacy 5-bit blocks of 32 with one scale; k-quants of the same size are better.", _kld(0.02224, 0.1316), 6, "Q5_0", kld=0.02224),
    Format("Q4_K_M", FormatKind.GGUF, 4.5, _LLAMA_CPP, "4-bit k-quant mix, the usual default: sensitive tensors get 6 bits.", _kld(0.03127, 0.1755), 7, "Q4_K", kld=0.03127),
    Format("Q4_K_S", FormatKind.GGUF, 4.5, _LLAMA_CPP, "4-bit k-quant, fewer 5/6-bit tensors than Q4_K_M: a little smaller, a little worse.", _kld(0.04314, 0.2689), 9, "Q4_K", kld=0.04314),
    Format("IQ4_XS", FormatKind.GGUF, 4.25, _LLAMA_CPP, "4-bit non-linear grid in 256-blocks: Q4_K_S quality in less space; best with an imatrix.", "KLD 0.03633 with imatrix (" + KLD_SOURCE.replace("no imatrix", "imatrix") + ")", 8, "IQ4_XS", kld=0.03633),
    # llama-quantize's MXFP4_MOE (core/gguf/mixes.py): the routed experts (3-D, ne[2] > 1) MXFP4, every other
    # quantizable tensor Q8_0; on a dense model it is just Q8_0, so it is offered for MoE models only.
    Format("MXFP4_MOE", FormatKind.GGUF, 4.25, _LLAMA_CPP, "Mixture-of-experts only: routed experts in MXFP4 (4-bit floats, blocks of 32 with a power-of-two scale), everything else Q8_0: gpt-oss's released format.", "no published KLD; exact for gpt-oss's MXFP4 experts, which are copied as released", 8, "MXFP4", moe_only=True),
    Format("Q4_0", FormatKind.GGUF, 4.5, _LLAMA_CPP, "Legacy 4-bit blocks of 32 with one scale: fast everywhere, lower quality than Q4_K.", _kld(0.07194, 0.4685), 10, "Q4_0", kld=0.07194),
    Format("Q3_K_L", FormatKind.GGUF, 3.4375, _LLAMA_CPP, "3-bit k-quant with 5-bit attention/ffn_down: the largest 3-bit mix.", _kld(0.08718, 0.5562), 11, "Q3_K", kld=0.08718),
    Format("Q3_K_M", FormatKind.GGUF, 3.4375, _LLAMA_CPP, "3-bit k-quant, 4/5-bit where it matters: noticeable loss, fits small GPUs.", _kld(0.10191, 0.6569), 12, "Q3_K", kld=0.10191),
    Format("Q3_K_S", FormatKind.GGUF, 3.4375, _LLAMA_CPP, "3-bit k-quant for all layers: large quality loss.", _kld(0.22822, 1.6322), 13, "Q3_K", kld=0.22822),
    Format("Q2_K", FormatKind.GGUF, 2.625, _LLAMA_CPP, "2-bit k-quant (3/4-bit for attention): last resort, big quality loss.", _kld(0.44513, 3.5199), 14, "Q2_K", kld=0.44513),
    Format("AWQ_INT4_G32", FormatKind.AWQ, 4.0 + 20 / 32, _TRANSFORMERS, "AWQ 4-bit, groups of 32: activation-aware scales protect salient channels; most accurate AWQ, largest.", "AWQ g128 Llama-2-7B wikitext PPL 5.61 vs RTN 5.73, FP16 5.47 (llm-compressor #1177); g32 is finer", 5, group_size=32, needs_gpu=True),
    Format("AWQ_INT4_G64", FormatKind.AWQ, 4.0 + 20 / 64, _TRANSFORMERS, "AWQ 4-bit, groups of 64: between g32 and g128 in size and accuracy.", "AWQ g128 Llama-2-7B wikitext PPL 5.61 vs RTN 5.73 (llm-compressor #1177); g64 is finer", 6, group_size=64, needs_gpu=True),
    Format("AWQ_INT4_G128", FormatKind.AWQ, 4.0 + 20 / 128, _TRANSFORMERS, "AWQ 4-bit, groups of 128 (the standard): int4 weights + fp16 scale and int4 zero per group.", "Llama-2-7B wikitext PPL 5.61 (AutoAWQ 5.615) vs RTN 5.73 (llm-compressor #1177)", 7, group_size=128, needs_gpu=True),
    Format("GPTQ_INT4_G128", FormatKind.GPTQ, 4.0 + 20 / 128, _TRANSFORMERS, "GPTQ 4-bit, groups of 128: error-compensating rounding from a calibration set; same storage as AWQ g128.", "comparable to AWQ g128 on Llama-2 (AWQ paper); no KLD table in our references", 8, group_size=128, needs_gpu=True),
    Format("NF4", FormatKind.BNB, 4.0 + 32 / 64, "transformers + bitsandbytes (CUDA; CPU support is experimental)", "NormalFloat 4-bit quantized at load time, blocks of 64 with an fp32 absmax: no calibration, QLoRA's format.", "QLoRA paper: NF4 matches 16-bit fine-tuning quality; no KLD table in our references", 9, group_size=64, needs_gpu=True),
    Format("NF4_DQ", FormatKind.BNB, 4.0 + 8 / 64 + 32 / (64 * 256), "transformers + bitsandbytes (CUDA; CPU support is experimental)", "NF4 with double quantization: the absmax constants themselves are stored in 8 bits (saves ~0.37 bit/weight).", "QLoRA paper: double quantization costs no measurable quality", 9, group_size=64, needs_gpu=True),
    Format("FP8_E4M3", FormatKind.FP8, 8.0, "vLLM / transformers (GPUs with FP8: Ada, Hopper and newer)", "8-bit floats (e4m3) with one scale per output channel: near-lossless, fast on new GPUs.", "FP8 dynamic Llama-3-8B-Instruct GSM8K 76.4% (llm-compressor examples/awq/RESULTS.md)", 2, needs_gpu=True),
    Format("INT8", FormatKind.INT8, 8.0, "transformers (bitsandbytes LLM.int8 / torchao int8 weight-only)", "8-bit integer weights with one scale per output channel, 16-bit activations: near-lossless, half of F16.", "near-lossless (LLM.int8 paper); no KLD table in our references", 3, needs_gpu=True),
)

# The i-quants below 4 bits, best first (they rank between the k-quants by their KLD; see above).
_IQ_ROWS: tuple[Format, ...] = (
    Format("IQ3_M", FormatKind.GGUF, 3.4375, _LLAMA_CPP, "3.4-bit i-quant mix (4-bit attn_v/attn_output): Q3_K_M quality in less space.", _iq_kld(0.102534, 0.6667), 12, "IQ3_S", kld=0.102534),
    Format("IQ3_S", FormatKind.GGUF, 3.4375, _LLAMA_CPP, "3.4-bit i-quant (non-linear grid) for every tensor; best with calibration text.", "no published KLD; between IQ3_M and IQ3_XXS", 13, "IQ3_S"),
    Format("IQ3_XS", FormatKind.GGUF, 3.4375, _LLAMA_CPP, "3.3-bit i-quant mix: IQ3_S with 3.06-bit attention and middle FFN layers.", "no published KLD; between IQ3_S and IQ3_XXS", 13, "IQ3_S"),
    Format("IQ3_XXS", FormatKind.GGUF, 3.0625, _LLAMA_CPP, "3.06-bit i-quant mix: needs importance weights; smaller than Q3_K_S and better.", _iq_kld(0.183625, 1.2268), 13, "IQ3_XXS", kld=0.183625),
    Format("IQ2_M", FormatKind.GGUF, 2.5625, _LLAMA_CPP, "2.7-bit i-quant mix: the best of the 2-bit mixes; needs importance weights.", _iq_kld(0.325989, 2.3692), 14, "IQ2_S", kld=0.325989),
    Format("IQ2_S", FormatKind.GGUF, 2.3125, _LLAMA_CPP, "2.5-bit i-quant mix (IQ2_XS with 3.4-bit attention): needs importance weights.", "no published KLD; between IQ2_M and IQ2_XXS", 15, "IQ2_XS"),
    Format("IQ2_XS", FormatKind.GGUF, 2.3125, _LLAMA_CPP, "2.3-bit i-quant: large quality loss; needs importance weights.", "no published KLD; between IQ2_M and IQ2_XXS", 15, "IQ2_XS"),
    Format("IQ2_XXS", FormatKind.GGUF, 2.0625, _LLAMA_CPP, "2.06-bit i-quant: very large quality loss; for models too big for anything else.", _iq_kld(0.812022, 7.8601), 16, "IQ2_XXS", kld=0.812022),
    Format("IQ1_M", FormatKind.GGUF, 1.75, _LLAMA_CPP, "1.75-bit i-quant: only for very large models; small ones stop making sense.", "no published KLD; between IQ2_XXS and IQ1_S", 17, "IQ1_M"),
    Format("IQ1_S", FormatKind.GGUF, 1.5625, _LLAMA_CPP, "1.56-bit i-quant, the smallest GGUF: only for very large models.", _iq_kld(2.254554, 54.46), 18, "IQ1_S", kld=2.254554),
)

# Every row, in order: the GGUF rows (the i-quants after Q2_K, as before), then the others.
_CATALOGUE: tuple[Format, ...] = (*(f for f in _ROWS if f.kind == FormatKind.GGUF), *_IQ_ROWS,
                                  *(f for f in _ROWS if f.kind != FormatKind.GGUF))
FORMATS: dict[str, Format] = {f.name: f for f in _CATALOGUE}

# Aliases people type.
_ALIASES = {"AWQ": "AWQ_INT4_G128", "GPTQ": "GPTQ_INT4_G128", "FP8": "FP8_E4M3", "NF4-DQ": "NF4_DQ"}


def get_format(name: str) -> Format:
    """The catalogue row for ``name`` (case-insensitive; 'AWQ' means AWQ int4 g128)."""
    from quantpress.core.errors import InvalidInput

    key = name.strip().upper().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in FORMATS:
        raise InvalidInput(f"unknown format '{name}'; choose from {', '.join(FORMATS)}")
    return FORMATS[key]


def gguf_formats() -> tuple[Format, ...]:
    return tuple(f for f in _CATALOGUE if f.kind == FormatKind.GGUF)


def all_formats() -> tuple[Format, ...]:
    return _CATALOGUE
