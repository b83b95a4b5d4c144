"""quantpress: point-and-click local LLM quantization (GGUF k-quants, AWQ), estimation, evaluation and chat."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("quantpress")
except _metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"
