"""Quantized Hugging Face folders for GPU runtimes (vLLM, transformers): FP8 (compressed-tensors
float-quantized), GPTQ int4 (compressed-tensors pack-quantized and GPTQ v1) and NF4 (bitsandbytes).

- ``plan.plan_hf_quant(model_dir, scheme) -> HfQuantPlan``: every stored tensor and the exact bytes of
  the weight files, from the safetensors headers (the estimator shows these sizes).
- ``write.convert_weights_only(model_dir, out, scheme, quantize_module)``: calibration-free schemes.
- ``fp8.FP8_SCHEME`` / ``fp8.quantize_fp8``.
"""
