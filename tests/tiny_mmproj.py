"""Tiny multimodal wrappers that llama.cpp's converter accepts with ``--mmproj`` (issue 16), built
from the family fixtures of tiny_models.py, plus the few files a Hub checkpoint has and
``save_pretrained`` does not write:

- ``preprocessor_config.json`` (image mean/std, and Gemma 3's ``image_seq_length``), which
  llama.cpp's MmprojModel reads;
- Gemma 3: the tower renamed to the Hub layout ``vision_tower.vision_model.*`` (transformers 5.25
  saves ``vision_tower.embeddings.*`` / ``vision_tower.encoder.*``, which llama.cpp's tensor table
  does not know);
- Mistral 3: ``[IMG]``, ``[IMG_BREAK]``, ``[IMG_END]`` as added tokens (ids 10-12): llama.cpp's
  LlavaVisionModel looks ``[IMG_BREAK]`` up by text to cut its embedding row into the mmproj.
"""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from tiny_models import built_once, tiny_model

MM_ARCHS = ("gemma3-mm", "mistral3-mm")
# SigLIP's (Gemma 3) and Pixtral's (Mistral 3) processor values, as their Hub preprocessor configs
_PREPROCESSOR = {
    "gemma3-mm": {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "image_seq_length": 4,
                  "image_processor_type": "Gemma3ImageProcessor"},
    "mistral3-mm": {"image_mean": [0.48145466, 0.4578275, 0.40821073],
                 "image_std": [0.26862954, 0.26130258, 0.27577711], "image_processor_type": "PixtralImageProcessor"},
}
_MISTRAL_IMAGE_TOKENS = {"10": "[IMG]", "11": "[IMG_BREAK]", "12": "[IMG_END]"}


def _hub_layout(folder: Path) -> None:
    """Rename a Gemma 3 tower saved by transformers 5.25 to the Hub's ``vision_tower.vision_model.*``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    for f in folder.glob("*.safetensors"):
        with safe_open(str(f), "pt") as src:
            meta = src.metadata()
            state = {(k.replace("vision_tower.", "vision_tower.vision_model.", 1)
                      if k.startswith("vision_tower.") else k): src.get_tensor(k) for k in src.keys()}
        save_file(state, str(f), metadata=meta)
    index = folder / "model.safetensors.index.json"
    if index.exists():
        data = json.loads(index.read_text())
        data["weight_map"] = {(k.replace("vision_tower.", "vision_tower.vision_model.", 1)
                               if k.startswith("vision_tower.") else k): v for k, v in data["weight_map"].items()}
        index.write_text(json.dumps(data, indent=1))


def _build(arch: str, folder: Path) -> None:
    base = arch.removesuffix("-hub")
    shutil.copytree(tiny_model(base, folder.parent), folder)
    base = base.removesuffix("-wide")
    pre = dict(_PREPROCESSOR[base], **({"image_seq_length": 256} if arch == "gemma3-mm-wide-hub" else {}))
    (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=1))
    if base == "gemma3-mm":
        _hub_layout(folder)
    if base == "mistral3-mm":
        cfg = json.loads((folder / "tokenizer_config.json").read_text())
        cfg["added_tokens_decoder"] = {i: {"content": t, "special": True, "lstrip": False, "rstrip": False,
                                           "normalized": False, "single_word": False}
                                       for i, t in _MISTRAL_IMAGE_TOKENS.items()}
        (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))


def tiny_mm_model(arch: str, cache_dir: Path) -> Path:
    """The tiny multimodal ``arch`` (``gemma3-mm``, ``mistral3-mm`` or their ``-wide`` towers) ready for
    ``--mmproj``, built once
    under ``cache_dir``."""
    return built_once(f"{arch}-hub", cache_dir, _build)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    """A plain 8-bit RGB PNG (no imaging library needed)."""
    h, w, _ = rgb.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\0" + rgb[y].astype(np.uint8).tobytes() for y in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path
