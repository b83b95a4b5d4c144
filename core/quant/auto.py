"""What ``engine="auto"`` does for each GGUF mix: which quantizer, and whether importance is used.

quantpress departs from llama-quantize only where a departure measured no worse than llama.cpp on
every test model; everywhere else "auto" is ggml's own quantizer without importance, i.e.
llama-quantize's exact bytes for that mix. The evidence is ``python -m benchmarks.auto_choice``
(BENCHMARKS.md, "Choosing auto"): KL-divergence to each model's F32 GGUF on held-out text, as a
paired difference to llama.cpp's pipeline ± its standard error, on six models
(benchmarks/trained_models.py): the demo (weights on a Q4_1 grid), two bf16 fine-tunes of it (one
still on the grid, one 20x further off it), and three models trained from scratch, never quantized (a
Llama and a Qwen3 whose rows are multiples of 256, and a Llama with the demo's 576-wide rows).

One choice acts on a single tensor type within a mix: ``grid_safe`` stores Q5_1 tensors so that a search
cannot round a fine-tune back onto an older grid (core/quant/grid_safe.py).

A choice depends on where the importance comes from:
- ``weights``: estimated from the weights (core/calibration/weights.py), the converter's default;
- ``none``: plain rounding (``--calibration none``);
- ``measured``: an imatrix from calibration text or a llama.cpp imatrix file, compared with
  llama.cpp given the same matrix.

An explicit engine ("ggml" or "native") bypasses this table: it quantizes every type with that
engine and uses whatever importance the plan has, as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from quantpress.core.gguf.mixes_iq import IQ_MIXES
from quantpress.core.quant import ENGINE_CHOICES


@dataclass(frozen=True)
class QuantChoice:
    """How one output's tensors are quantized: ``engine`` for core.quant.quantize_tensor, whether
    the plan's importance (if any) is passed to it, and whether each tensor is rescaled to unit gain
    (``unit_gain``, core/quant/unit_gain.py); ``grid_safe``: Q5_1 tensors never snapped onto an older grid
    (core/quant/grid_safe.py); ``unit_gain_scope``: which tensors unit gain rescales (UNIT_GAIN_SCOPES)."""

    engine: str
    importance: bool
    unit_gain: bool = False
    grid_safe: bool = False
    unit_gain_scope: str = "all"

    def rescales(self, ggml_type: str) -> bool:
        """Whether a tensor stored as ``ggml_type`` is rescaled to unit gain (after ``for_output``)."""
        return self.unit_gain and (self.unit_gain_scope != "off-gain" or ggml_type in OFF_UNIT_GAIN)


LLAMA_CPP = QuantChoice("ggml", False)  # llama-quantize without an imatrix
NATIVE = QuantChoice("native", True)
GGML_WITH_IMPORTANCE = QuantChoice("ggml", True)
NATIVE_PLAIN = QuantChoice("native", False)
# ggml's quantizer given the importance, each tensor then rescaled to unit gain (core/quant/unit_gain.py;
# BENCHMARKS.md "The i-quant scale factors").
GGML_UNIT_GAIN = QuantChoice("ggml", True, unit_gain=True)
# The types ggml stores more than 1% off unit gain on the test models (BENCHMARKS.md "The i-quant scale
# factors": IQ1_S/IQ1_M 0.91-0.93, Q2_K 0.94-0.95, IQ2_XXS 0.94-0.96, IQ2_XS 0.97-0.98, Q3_K and IQ2_S 0.98,
# IQ3_XXS 0.985-0.99, IQ3_S 1.016); IQ4_NL, Q4_0 and the 4-bit-and-up k-quants are within 0.8% of it.
OFF_UNIT_GAIN = frozenset({"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "Q2_K", "Q3_K"})
# Which tensors unit gain rescales: "all" of them; "mixed": all of them in an output that holds an
# OFF_UNIT_GAIN type, none in one that does not (unit gain reconciles the gains of the types that meet in
# a mix: an i-quant file whose rows 256 never divides holds IQ4_NL fallbacks beside 4-bit-and-up types only,
# where rescaling them cost 1.9% (2.2 SE) against ggml's bytes on qwen3_896); "off-gain": only tensors of an
# OFF_UNIT_GAIN type (BENCHMARKS.md "Which tensors to rescale": rescaling IQ4_NL cost 1-2% on the demo and qwen3_896,
# rescaling the 4-bit-and-up k-quants beside the i-quants saved 0.5-2% on scratch and qwen3).
UNIT_GAIN_SCOPES = ("all", "mixed", "off-gain")
GGML_UNIT_GAIN_MIXED = QuantChoice("ggml", True, unit_gain=True, unit_gain_scope="mixed")
GGML_UNIT_GAIN_OFF = QuantChoice("ggml", True, unit_gain=True, unit_gain_scope="off-gain")
GGML_PLAIN_UNIT_GAIN = QuantChoice("ggml", False, unit_gain=True)
# Choices with grid-safe Q5_1 tensors (core/quant/grid_safe.py): searched where the weights are a grid or
# were never quantized, at Q5_0's max-abs levels where they sit in clusters around an older grid. Q5_1
# appears in the k-quant mixes as the fallback of Q5_K for rows that 256 does not divide (576-wide models).
LLAMA_CPP_GRID_SAFE = QuantChoice("ggml", False, grid_safe=True)
GGML_GRID_SAFE = QuantChoice("ggml", True, grid_safe=True)
NATIVE_GRID_SAFE = QuantChoice("native", True, grid_safe=True)

IMPORTANCE_SOURCES = ("weights", "none", "measured")

# mix -> {importance source -> choice}; a mix or source not listed gets FALLBACK[source].
# From `benchmarks.auto_choice` (BENCHMARKS.md, "Choosing auto"): a departure is listed where it was
# not worse than llama.cpp (Δ ≤ 2 paired SE) on each of the test models and better on average;
# of two such, the one whose worst model is closer to llama.cpp (`benchmarks.auto_choice.decide`). On
# finetuned_far, the fine-tune off the grid, the weights-estimated importance makes the Q5_1 path (the
# Q5_1 mix, and the Q5_K mixes' fallback for 576-wide rows) 1.8-3.7x
# worse than llama-quantize with either quantizer, as issue 21 found on its own fine-tune: those mixes
# stay llama-quantize's by default. "none" (--calibration none): the native kernels' plain search only
# where it held on the three never-quantized models built last (BENCHMARKS.md "Choosing auto",
# "`--calibration none`"); Q2_K, Q3_K_M, IQ4_NL, IQ4_XS and Q4_K_S lost there (qwen3 Q2_K +111%, Q3_K_M
# +23%; scratch576 IQ4_NL and IQ4_XS +28%; qwen3_896 Q4_K_S +16%) and write llama-quantize's bytes.
AUTO: dict[str, dict[str, QuantChoice]] = {
    # Q2_K, Q4_K_S, Q5_0: no departure with the weights estimate. The native kernels given it lost on qwen3
    # (Q2_K +25% ± 10%, the earlier qwen3 build), ggml's quantizer given it on the qwen3 build of 2026-12-05
    # 13:20 (8x256 tokens: Q2_K +58% ± 12%, Q4_K_S +16% ± 6%, Q5_0 +13% ± 3%; BENCHMARKS.md "Six models"),
    # where the earlier build had measured it better: the estimate is not reliable enough there.
    "Q2_K": {"measured": NATIVE},
    "Q3_K_S": {"weights": NATIVE, "none": NATIVE_PLAIN},
    "Q3_K_M": {"weights": GGML_WITH_IMPORTANCE},
    # Q3_K_L, Q5_K_S, Q5_K_M: llama-quantize's way (given a measured imatrix, as llama.cpp uses it) but for
    # grid-safe Q5_1 fallbacks. Native kernels with the weights estimate won on demo, finetuned and scratch,
    # but lost on finetuned_far (Q3_K_L KLD 0.250 vs llama.cpp's 0.142) through their Q5_1 tensors, whose
    # search rounds that fine-tune back onto the demo's old levels. Grid-safe, on six models (BENCHMARKS.md,
    # "Six models: grid-safe Q5_1"): never worse than llama.cpp beyond 2 SE,
    # Q5_K_S/Q5_K_M -16% to -90% on the demo family with the weights estimate, -70% to -73% on
    # finetuned_far given its imatrix, -23% on the never-quantized 576-wide model (scratch576); bytes
    # unchanged where 256 divides every row.
    "Q3_K_L": {"weights": LLAMA_CPP_GRID_SAFE, "none": LLAMA_CPP_GRID_SAFE, "measured": GGML_GRID_SAFE},
    # Q4_0 and IQ4_XS given a measured imatrix, IQ4_NL given the weights estimate: back to llama-quantize's
    # way, as the departures measured worse on scratch576, the 576-wide model trained from scratch
    # (BENCHMARKS.md "Choosing auto", "The legacy and IQ4 formats on six models": Q4_0 +7.9% ± 3.7%,
    # IQ4_XS +26.3% ± 8.2%, IQ4_NL +29.6% ± 13.0%), though they won on the demo family and scratch.
    "Q4_0": {"weights": GGML_WITH_IMPORTANCE, "none": NATIVE_PLAIN},
    "Q4_1": {"weights": NATIVE, "none": NATIVE_PLAIN, "measured": NATIVE},
    "Q4_K_S": {"measured": NATIVE},
    # Q4_K_M: ggml with the weights estimate lost on finetuned_far (+14% ± 6%), through its Q5_0 tensors
    # alone (the Q4_K fallback on 576-wide rows), and on the qwen3 build of 2026-12-05 13:20 (+17% ± 7%,
    # BENCHMARKS.md "Six models"), so the default is llama-quantize's; the native kernels given a measured
    # imatrix held on all five models of the earlier study.
    "Q4_K_M": {"measured": NATIVE},
    "Q5_0": {"measured": NATIVE},
    "Q5_1": {"measured": NATIVE},
    "Q5_K_S": {"weights": LLAMA_CPP_GRID_SAFE, "none": LLAMA_CPP_GRID_SAFE, "measured": NATIVE_GRID_SAFE},
    "Q5_K_M": {"weights": LLAMA_CPP_GRID_SAFE, "none": LLAMA_CPP_GRID_SAFE, "measured": NATIVE_GRID_SAFE},
    "Q6_K": {"weights": GGML_WITH_IMPORTANCE, "none": NATIVE_PLAIN, "measured": NATIVE},
    # The i-quants below 4 bits: ggml's quantizer (no native kernel) always given the plan's importance. Most of
    # them cannot be made without it (llama.cpp requires an imatrix; core/gguf/mixes_iq.py), and for IQ3_S/IQ3_M
    # ggml's grid search is built around it (`python -m benchmarks.iquants`, BENCHMARKS.md "GGUF i-quants").
    **{mix: {"weights": GGML_WITH_IMPORTANCE, "measured": GGML_WITH_IMPORTANCE} for mix in IQ_MIXES},
    # Where it measured no worse than llama.cpp (Δ ≤ 2 SE) on demo, scratch and qwen3 and better on average,
    # every tensor of the mix (the i-quants and their k-quant neighbours) is then rescaled to unit gain: ggml
    # leaves them at gains from 0.95 to 1.02 by type, and the mix pays for the mismatch (BENCHMARKS.md "The
    # i-quant scale factors"). With a measured imatrix: all but IQ2_S (demo +1.8%, 2.7 SE), IQ3_XXS and
    # IQ3_XS (qwen3 +2% and +7%). With the weights estimate, whose importance the gain is weighted by, only
    # IQ2_XS held on all three (IQ1_S/IQ1_M lost on qwen3, the IQ3 mixes on demo). Given an imatrix the
    # rescaling is "mixed" (UNIT_GAIN_SCOPES): a file with no type far from unit gain (qwen3_896's, all
    # IQ4_NL fallbacks) keeps ggml's bytes, as llama.cpp's; on the other models that is every tensor, as
    # measured. IQ2_S rescales its off-gain types only (its IQ2_XS and IQ3_S tensors, not IQ4_NL fallbacks
    # or k-quants): against llama.cpp given the same imatrix demo +1.1% ± 0.6%, scratch -49%, qwen3 -4.2%,
    # qwen3_896 +0.0%, where every tensor rescaled was demo +1.9% ± 0.6% and ggml's bytes rose above the
    # smaller IQ2_XS file on scratch and qwen3 (BENCHMARKS.md "Which tensors to rescale").
    **{mix: {"weights": GGML_WITH_IMPORTANCE, "measured": GGML_UNIT_GAIN_MIXED}
       for mix in ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_M", "IQ3_S", "IQ3_M")},
    "IQ2_XS": {"weights": GGML_UNIT_GAIN, "measured": GGML_UNIT_GAIN_MIXED},
    "IQ2_S": {"weights": GGML_WITH_IMPORTANCE, "measured": GGML_UNIT_GAIN_OFF},
    # Types chosen per tensor for a target (core/gguf/best_fit.py): ggml's quantizer for every type, given
    # the plan's importance, each tensor at unit gain. Measured on qwen3 (the planner's default runtime
    # sensitivity, at llama.cpp's Q3_K_M, Q4_K_S and Q4_K_M sizes): KLD 0.380, 0.641, 0.732 of the fixed
    # mixes' with unit gain, 0.567, 0.603, 0.759 without it, and only with it did the KLD fall with the
    # size (BENCHMARKS.md, "Types chosen for a target"). The planner prices each type by its error's
    # energy, and a shrink of a whole tensor costs more than its energy says.
    "MIXED": {"weights": GGML_UNIT_GAIN, "measured": GGML_UNIT_GAIN, "none": GGML_PLAIN_UNIT_GAIN},
}

# Mixture-of-experts models: departures that lost there, back to llama-quantize's way. On the generated
# Qwen3-MoE of `benchmarks.moe_quality` (BENCHMARKS.md, "Quality on a generated mixture-of-experts
# model"), Q4_K_M with the native kernels given the measured imatrix was 5% worse than llama.cpp given
# the same imatrix (+0.00029 ± 0.00004 KLD), ggml's quantizer with it equal (+0.00001); Q2_K's native
# choice won there (-0.00244 ± 0.00021) and stays.
AUTO_MOE: dict[str, dict[str, QuantChoice]] = {
    "Q4_K_M": {"measured": GGML_WITH_IMPORTANCE},
}

# Unlisted: llama-quantize's behaviour (without importance, or with the measured imatrix as given).
FALLBACK: dict[str, QuantChoice] = {"weights": LLAMA_CPP, "none": LLAMA_CPP, "measured": GGML_WITH_IMPORTANCE}


def importance_source(calibration_kind: str) -> str:
    """``weights``, ``none`` or ``measured`` for a plan's calibration kind."""
    return calibration_kind if calibration_kind in ("weights", "none") else "measured"


def choose(engine: str, mix: str, calibration_kind: str, *, experts: bool = False) -> QuantChoice:
    """The quantizer and importance use for output ``mix`` of a plan with ``engine`` and calibration;
    ``experts``: the model has routed experts (``AUTO_MOE`` first)."""
    if engine not in ENGINE_CHOICES:
        raise ValueError(f"unknown quantization engine {engine!r}; choose one of {', '.join(ENGINE_CHOICES)}")
    if engine != "auto":
        return QuantChoice(engine, True)
    source = importance_source(calibration_kind)
    moe = AUTO_MOE.get(mix, {}).get(source) if experts else None
    return moe or AUTO.get(mix, {}).get(source, FALLBACK[source])


def for_output(choice: QuantChoice, types: Iterable[str]) -> QuantChoice:
    """``choice`` for one output whose tensors get ``types``: a "mixed" unit gain is dropped where the output
    holds no OFF_UNIT_GAIN type, and otherwise applies to every tensor."""
    if choice.unit_gain and choice.unit_gain_scope == "mixed":
        mixed = not OFF_UNIT_GAIN.isdisjoint(types)
        return replace(choice, unit_gain=mixed, unit_gain_scope="all")
    return choice
