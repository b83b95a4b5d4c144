"""Quantized Hugging Face folders for GPU runtimes (vLLM, transformers): FP8 (compressed-tensors
float-quantized), GPTQ int4 (compressed-tensors pack-quantized and GPTQ v1) and NF4 (bitsandbytes).

- ``plan.plan_hf_quant(model_dir, scheme) -> HfQuantPlan``: every stored tensor and the exact bytes of
  the weight files, from the safetensors headers (the estimator shows these sizes).
- ``write.convert_weights_only(model_dir, out, scheme, quantize_module)``: calibration-free schemes.
- ``fp8.FP8_SCHEME`` / ``fp8.quantize_fp8``; ``nf4``; ``gptq_run.gptq_convert`` (GPTQ's calibrated pass).
- ``weights_only(kind, model_dir)``: the (scheme, quantizer) of "fp8" / "nf4" (CLI and GUI share it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

WEIGHTS_ONLY = ("fp8", "nf4")


def weights_only(kind: str, model_dir: str | Path) -> tuple[Any, Callable[[Any], dict[str, Any]]]:
    """(Scheme, module quantizer) of a calibration-free output ``kind`` ("fp8", "nf4") for ``model_dir``."""
    if kind == "fp8":
        from quantpress.core.hfquant.fp8 import FP8_SCHEME, quantize_fp8

        return FP8_SCHEME, quantize_fp8
    if kind == "nf4":
        from quantpress.core.hfquant.nf4 import nf4_scheme, quantize_nf4
        from quantpress.core.validate import read_config

        config = read_config(Path(model_dir))  # the compute dtype transformers will use: the model's own
        return nf4_scheme(str(config.get("torch_dtype") or config.get("dtype") or "float32")), quantize_nf4
    raise ValueError(f"unknown calibration-free format '{kind}'; use one of {', '.join(WEIGHTS_ONLY)}")
