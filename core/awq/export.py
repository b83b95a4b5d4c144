"""Write AWQ results: compressed-tensors "pack-quantized", AutoAWQ "GEMM", or the scaled+clipped
full-precision folder (for AWQ-for-GGUF). One safetensors shard per decoder layer, written as the
pass goes, plus one for the rest (embeddings, final norm, lm_head), an index, config.json with the
``quantization_config``, the tokenizer files and a ``quantpress_awq.json`` sidecar.
All of it in a temporary folder next to the target, renamed when complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from quantpress.core.awq.quantizer import pack_autoawq, pack_compressed_tensors
from quantpress.core.calibration.layerwise import _WeightFiles
from quantpress.core.errors import InvalidInput
from quantpress.core.signals import AWQ_TMP, remove_stale

FORMATS = ("compressed-tensors", "autoawq", "fp")  # "fp": scaled+clipped weights, unquantized
SIDECAR = "quantpress_awq.json"
_WEIGHT_FILES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt", ".h5", ".msgpack")
_SKIP = {"config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json", SIDECAR}


class ShardWriter:
    """Collects tensors shard by shard into ``folder`` (see module docstring)."""

    def __init__(self, folder: Path, fmt: str, n_layers: int, source_dtype: Any) -> None:
        import torch

        if fmt not in FORMATS:
            raise InvalidInput(f"unknown AWQ output format '{fmt}'; use one of: {', '.join(FORMATS)}")
        self.folder, self.fmt, self.n_shards = folder, fmt, n_layers + 1
        # AutoAWQ checkpoints are fp16 throughout (its kernels take fp16 activations).
        self.float_dtype = torch.float16 if fmt == "autoawq" else source_dtype
        self.weight_map: dict[str, str] = {}
        self.total_bytes = 0

    def _shard_name(self, i: int) -> str:
        return f"model-{i + 1:05d}-of-{self.n_shards:05d}.safetensors"

    def write_layer(self, index: int, quantized: dict[str, tuple[Any, Any, Any, int]], floats: dict[str, Any]) -> None:
        tensors: dict[str, Any] = {}
        for module, (q, scale, zero, _gs) in quantized.items():
            if self.fmt == "fp":  # keep the scaled and clipped float weight
                continue
            floats.pop(module + ".weight", None)
            packed = (pack_compressed_tensors(q, scale, zero, self._scale_dtype()) if self.fmt == "compressed-tensors"
                      else pack_autoawq(q, scale, zero))
            tensors.update({f"{module}.{k}": v for k, v in packed.items()})
        for name, t in floats.items():
            tensors[name] = t.to(self.float_dtype) if t.is_floating_point() else t
        self._save(index, tensors)

    def _scale_dtype(self) -> Any:
        import torch

        return torch.float16

    def write_rest(self, weights: _WeightFiles, layer_prefix: str) -> None:
        keys = [k for k in weights.keys() if not k.startswith(layer_prefix + ".")]
        tensors = weights.load(keys, self.float_dtype, "cpu")
        self._save(self.n_shards - 1, tensors)

    def _save(self, shard: int, tensors: dict[str, Any]) -> None:
        from safetensors.torch import save_file

        name = self._shard_name(shard)
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        save_file(tensors, str(self.folder / name), metadata={"format": "pt"})
        for k, v in tensors.items():
            self.weight_map[k] = name
            self.total_bytes += v.numel() * v.element_size()

    def finish_index(self) -> None:
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": dict(sorted(self.weight_map.items()))}
        (self.folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def copy_model_files(src: Path, dst: Path) -> list[str]:
    """Tokenizer, generation config and other small files (not weights, not config.json)."""
    copied = []
    for p in sorted(src.iterdir()):
        if p.is_file() and p.name not in _SKIP and p.suffix.lower() not in _WEIGHT_FILES:
            shutil.copy2(p, dst / p.name)
            copied.append(p.name)
    return copied


def _module_suffix(name: str) -> str:
    return name.split(".", 3)[3]  # model.layers.N.<suffix>


def compressed_tensors_config(group_sizes: dict[str, int | None], version: str) -> dict[str, Any]:
    """config.json ``quantization_config`` for pack-quantized int4 asymmetric groups; one config
    group per group size, targeting module-name regexes, unquantized linears in ``ignore``."""
    by_size: dict[int, set[str]] = {}
    ignore = ["lm_head"]
    for name, gs in group_sizes.items():
        if gs is None:
            ignore.append(name)
        else:
            by_size.setdefault(gs, set()).add(_module_suffix(name))
    groups: dict[str, Any] = {}
    for i, (gs, suffixes) in enumerate(sorted(by_size.items(), reverse=True)):
        targets = [f"re:.*\\.{s.replace('.', chr(92) + '.')}$" for s in sorted(suffixes)]
        groups[f"group_{i}"] = {
            "targets": targets,
            "weights": {"num_bits": 4, "type": "int", "symmetric": False, "strategy": "group", "group_size": gs,
                        "dynamic": False, "actorder": None, "observer": "minmax", "observer_kwargs": {},
                        "block_structure": None},
            "input_activations": None, "output_activations": None,
        }
    return {"quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
            "config_groups": groups, "ignore": ignore, "kv_cache_scheme": None, "global_compression_ratio": None,
            "version": version}


def autoawq_config(group_size: int, unquantized: list[str]) -> dict[str, Any]:
    return {"quant_method": "awq", "zero_point": True, "group_size": group_size, "bits": 4, "version": "gemm",
            "modules_to_not_convert": unquantized or None}


def write_config(src: Path, dst: Path, quantization_config: dict[str, Any] | None, dtype: str | None) -> None:
    config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    if quantization_config is not None:
        config["quantization_config"] = quantization_config
    if dtype is not None:
        config["torch_dtype"] = dtype
        config.pop("dtype", None)
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def temp_folder(out: Path) -> Path:
    from quantpress.core.outputs import make_folder

    make_folder(out.parent)
    remove_stale(out.parent, AWQ_TMP)  # what killed AWQ runs left behind
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def publish(tmp: Path, out: Path) -> None:
    """Move the finished folder into place (replacing an older output of ours)."""
    if out.exists():
        if not (out / SIDECAR).is_file():
            raise InvalidInput(f"output folder '{out}' exists and was not written by quantpress awq; "
                               f"choose another --out or remove it")
        shutil.rmtree(out)
    os.replace(tmp, out)
