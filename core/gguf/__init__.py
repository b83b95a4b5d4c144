"""GGUF files: reading, planning and writing conversions, and unpacking back to Hugging Face folders.

Public API (converter):
- ``plan.plan_conversion(model: ModelInfo, formats, out=None, *, imatrix=None, calibration=None,
  overrides=Overrides(), policy="quantpress", threads=0) -> ConversionPlan``: pure and fast (config,
  tokenizer files and headers only; works for a Hub folder without weights). Per output: ``path``,
  ``format``, ``tensor_types`` {GGUF name: GGML type}, exact ``file_bytes``. ``ConversionPlan`` is a
  frozen dataclass: ``save(path)`` / ``load(path)`` / ``to_dict()`` / ``describe()``.
- ``convert.convert(plan, *, report=ignore, cancel=NEVER, disk_free=None, device="auto") ->
  list[ConversionResult]``: streaming one-pass writer (several formats from one read of each tensor),
  temp name + rename, sidecar ``<output>.json``; ``device``: where a calibration pass over text runs
  ("auto": CUDA when torch sees a GPU). ``ConversionResult(output, format, file_bytes, seconds,
  peak_rss_bytes, ..., calibration_device)``.
- ``mixes.tensor_types(shapes, mix, MixContext) -> {name: type}``, ``mixes.MIXES`` (format -> ftype,
  base type), policies ``"quantpress"`` (default) and ``"llama.cpp"`` (llama-quantize's exact types).
- ``source.open_source(path)``: a ModelInfo for a local HF folder or .gguf (core.inspect.open_model).
- ``request.ConversionRequest(formats, out, calibration, ...)``: what the CLI and the GUI ask; ``.plan(model)``.
- ``arch``: one declarative ``ArchSpec`` per family (llama, mistral, qwen2, qwen3, gemma3, phi3).
- ``tokenizer.tokenizer_kv(folder, spec, config)``: tokenizer.* metadata (SentencePiece / BPE + pre).
- ``reference.llama_quantize(src, dst, fmt, imatrix=...)``: llama.cpp's quantizer, for comparisons.
- ``layout``: GGUF byte layout (the one encoder shared by planner and writer).
"""
