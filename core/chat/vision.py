"""Images in the chat: llama.cpp's multimodal library (libmtmd, shipped with llama-cpp-python 0.3.36
as ``llama_cpp.mtmd_cpp``) with the ``mmproj-*.gguf`` projector file beside the model.

The flow is the one of llama-cpp-python's ``MTMDChatHandler`` (llama_chat_format.py), without its
chat-template step (quantpress renders its own template, core/chat/template.py): the prompt text holds
one media marker per image; ``mtmd_tokenize`` splits it into text and image chunks; text chunks are
evaluated with ``Llama.eval``, image chunks by ``mtmd_helper_eval_chunk_single`` (the projector encodes
the image and its embeddings are decoded into the KV cache). Sampling then continues with
``Llama.generate`` on the cached prompt.

The projectors llama.cpp's tools/mtmd runs cover Gemma 3 (``gemma3``) and Mistral 3 / Pixtral
(``pixtral``), the two quantpress writes (core/gguf/mmproj.py).
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quantpress.core.errors import InvalidInput, ModelLoadError

IMAGE_TOKEN = -1  # the id standing for an image position in prompt token lists (never a real token)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")  # what stb_image in libmtmd decodes
_COMPUTE = re.compile(r"compute buffer size\s*=\s*([0-9.]+)\s*MiB")
_log_lines: list[str] = []  # libmtmd's log, kept short: read for the projector's compute buffer
_log_callback: Any = None  # the ctypes callback must outlive every call into libmtmd


def find_mmproj(model: Path) -> Path | None:
    """The projector file for ``model``: ``mmproj-*.gguf`` in its folder, the one whose name part is a
    prefix of the model's file name when there are several (``mmproj-NAME-F16.gguf`` for ``NAME-Q4_K_M.gguf``)."""
    model = Path(model)
    if not model.is_file():
        return None
    found = sorted(p for p in model.parent.glob("mmproj-*.gguf") if p.is_file())
    matching = [p for p in found if model.name.startswith(p.stem.removeprefix("mmproj-").rpartition("-")[0] + "-")]
    if len(matching) == 1:
        return matching[0]
    return found[0] if len(found) == 1 else None


def _install_log() -> None:
    """Route libmtmd's log (clip.cpp writes the projector's buffer sizes there) into ``_log_lines``
    instead of stderr."""
    global _log_callback
    if _log_callback is not None:
        return
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    def collect(level: int, text: bytes, user_data: Any) -> None:
        _log_lines.append(text.decode("utf-8", errors="replace"))
        del _log_lines[:-400]

    _log_callback = llama_cpp.llama_log_callback(collect)
    mtmd.mtmd_log_set(_log_callback, None)
    mtmd.mtmd_helper_log_set(_log_callback, None)


def image_bytes(path: str | Path) -> bytes:
    """The bytes of an image file, with a clear error for a missing or unsupported one."""
    p = Path(path)
    if p.suffix.lower() not in IMAGE_SUFFIXES:
        raise InvalidInput(f"{p.name}: not an image llama.cpp can read (use {', '.join(IMAGE_SUFFIXES)})")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{p}: cannot read the image ({exc.strerror})") from None


class Projector:
    """A loaded mmproj file bound to one ``llama_cpp.Llama`` (use it from that model's thread only)."""

    def __init__(self, llm: Any, path: Path, threads: int | None = None, use_gpu: bool = False) -> None:
        import llama_cpp.mtmd_cpp as mtmd

        _install_log()
        self._mtmd = mtmd
        self.path = Path(path)
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.print_timings = False
        params.n_threads = int(threads or llm.n_threads)
        first = len(_log_lines)
        self._ctx = mtmd.mtmd_init_from_file(str(self.path).encode(), llm.model, params)
        log = "".join(_log_lines[first:])
        if not self._ctx:
            reason = next((ln.strip() for ln in log.splitlines() if "failed" in ln or "unable" in ln), "see the log")
            raise ModelLoadError(f"{self.path.name}: llama.cpp could not load this vision projector ({reason}); "
                                 "images are not available for this model")
        if not mtmd.mtmd_support_vision(self._ctx):
            self.close()
            raise ModelLoadError(f"{self.path.name}: this projector has no vision encoder")
        sizes = [float(m) for m in _COMPUTE.findall(log)]
        # what clip.cpp reserved for encoding one image (its warm-up), as its log reports it
        self.compute_bytes = int(max(sizes) * (1 << 20)) if sizes else 0
        self.marker = mtmd.mtmd_default_marker().decode("utf-8")

    def tokenize(self, text: str, images: Sequence[bytes], add_bos: bool = True) -> tuple[Any, list[int]]:
        """The chunks of ``text`` (one marker per image, in order) and the prompt's token ids with
        ``IMAGE_TOKEN`` at each image position (their count is what the image costs in context)."""
        mtmd = self._mtmd
        if text.count(self.marker) != len(images):
            raise InvalidInput(f"the prompt has {text.count(self.marker)} image markers for {len(images)} images")
        bitmaps = []
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            for data in images:
                buf = (ctypes.c_uint8 * len(data)).from_buffer(bytearray(data))
                bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(self._ctx, buf, len(data), False)
                if not bitmap:
                    raise InvalidInput("llama.cpp could not decode an attached image (PNG, JPEG, BMP, GIF work)")
                bitmaps.append(bitmap)
            encoded = text.encode("utf-8")
            inp = mtmd.mtmd_input_text()
            inp.text, inp.text_len, inp.add_special, inp.parse_special = encoded, len(encoded), add_bos, True
            array = (mtmd.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
            rc = mtmd.mtmd_tokenize(self._ctx, chunks, ctypes.byref(inp), array, len(bitmaps))
            if rc != 0:
                raise InvalidInput(f"llama.cpp could not prepare the image prompt (mtmd_tokenize returned {rc})")
        except BaseException:
            mtmd.mtmd_input_chunks_free(chunks)
            raise
        finally:
            for bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(bitmap)
        return chunks, self._tokens(chunks)

    def _tokens(self, chunks: Any) -> list[int]:
        mtmd = self._mtmd
        out: list[int] = []
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, i)
            if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t()
                ids = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                out += [int(ids[j]) for j in range(n.value)]
            else:
                out += [IMAGE_TOKEN] * int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
        return out

    def prefill(self, llm: Any, chunks: Any) -> list[int]:
        """Evaluate ``chunks`` from an empty cache; the prompt as ``llm`` now holds it (its ids at
        image positions are whatever the buffer held: ``Llama.generate`` then finds the whole prompt
        cached and samples from the last chunk's logits)."""
        import llama_cpp

        mtmd = self._mtmd
        llm.reset()
        llm._ctx.kv_cache_clear()
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, i)
            if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t()
                ids = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                llm.eval([int(ids[j]) for j in range(n.value)])
                continue
            new_past = llama_cpp.llama_pos(0)
            rc = mtmd.mtmd_helper_eval_chunk_single(self._ctx, llm._ctx.ctx, chunk, llama_cpp.llama_pos(llm.n_tokens),
                                                    llama_cpp.llama_seq_id(0), llm.n_batch, False,
                                                    ctypes.byref(new_past))
            if rc != 0:
                raise ModelLoadError(f"{self.path.name}: llama.cpp failed to encode an image (code {rc})")
            llm.n_tokens = int(new_past.value)
        return [int(t) for t in llm.input_ids[: llm.n_tokens]]

    def free_chunks(self, chunks: Any) -> None:
        self._mtmd.mtmd_input_chunks_free(chunks)

    def close(self) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx:
            self._mtmd.mtmd_free(ctx)
