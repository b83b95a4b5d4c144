"""AWQ 4-bit (W4A16, int4 asymmetric with zero points, group size 128/64/32), calibrated one
decoder layer at a time on CPU or CUDA; written as compressed-tensors "pack-quantized", AutoAWQ
"GEMM", or as scaled full-precision weights for GGUF. No torch at import time.

Public API
- ``AwqSettings(group_size=128, samples=4, seqlen=512, search_samples=2, n_grid=10, duo_scaling=True,
  scale_search=True, clip_search=True, batch_rows=4, device="auto")``
- ``plan_awq(model_dir, settings, *, uniform=False) -> AwqPlan``: per-linear group sizes (the
  largest allowed size dividing each input width) and user-facing ``notes``.
- ``awq_convert(model_dir, out, *, format="compressed-tensors"|"autoawq"|"fp"|"gguf:<TYPE>", settings,
  text=None, calibration_label="default", report, cancel) -> AwqResult``.
- ``run_awq(plan, write, text, *, report, cancel) -> AwqRun``: the pass itself with a per-layer writer.
- ``quantizer``: ``quantize``/``dequantize``/``fake_quantize``, ``pack_compressed_tensors``/
  ``unpack_compressed_tensors``, ``pack_autoawq``/``unpack_autoawq`` (documented nibble orders).
- ``groups.ARCHITECTURES``: scaling groups per HF class (llama, mistral, qwen2, qwen3, gemma3, phi3).
- ``backend.AwqBackend``: chat/eval backend running packed checkpoints with torch's int4 CPU kernel.
"""
