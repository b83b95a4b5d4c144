"""Images in the chat (issue 16): a tiny Gemma 3 / Mistral 3 wrapper converted by quantpress (text GGUF
and the mmproj file beside it) answers a prompt holding a real PNG through llama-cpp-python 0.3.36's
libmtmd. Random weights: any generated tokens show the path runs; the image's tokens are counted in
the evaluated prompt, so the image was encoded and decoded, not dropped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from quantpress.core.chat.session import ChatSession
from quantpress.core.chat.types import ChatSettings
from quantpress.core.errors import InvalidInput
from tiny_mmproj import write_png


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, mm_root: Path) -> dict[str, Path]:
    """arch -> the Q8_0 text GGUF of the tiny wrapper, with quantpress's mmproj beside it."""
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion
    from quantpress.core.gguf.source import open_source
    from tiny_mmproj import tiny_mm_model

    root = tmp_path_factory.mktemp("vision_chat")
    out: dict[str, Path] = {}
    for arch in ("gemma3-mm", "mistral3-mm"):
        plan = plan_conversion(open_source(tiny_mm_model(arch, mm_root)), ["Q8_0"], root / arch)
        (root / arch).mkdir()
        (result,) = convert(plan)
        assert Path(result.mmproj).is_file()
        out[arch] = Path(result.output)
    return out


@pytest.mark.parametrize("arch", ["gemma3-mm", "mistral3-mm"])
def test_image_prompt_answers(arch: str, converted: dict[str, Path], tmp_path: Path) -> None:
    image = write_png(tmp_path / "cat.png", np.random.default_rng(0).integers(0, 256, (48, 40, 3)))
    session = ChatSession.load(converted[arch], ChatSettings(seed=1, max_tokens=6, ctx_tokens=512, threads=1))
    try:
        assert session.image_problem == ""
        projector = session.backend.projector  # type: ignore[attr-defined]
        assert projector.compute_bytes > 0  # read from clip.cpp's log
        with_image = session.send("what is this?", images=[image])
        assert with_image.stats.generated_tokens > 0
        session.clear()
        text_only = session.send("what is this?")
        # Gemma 3: 4 image tokens (2x2 after pooling) + <start_of_image>/<end_of_image>; Pixtral: a 4x4 grid
        # of 16 px patches merged 2x2 for a 48x40 image scaled to 64x48 -> rows with [IMG_BREAK]s, [IMG_END]
        assert with_image.stats.prompt_tokens >= text_only.stats.prompt_tokens + 4
    finally:
        session.close()


def test_image_without_projector_is_refused_plainly(converted: dict[str, Path], tmp_path: Path) -> None:
    lone = tmp_path / converted["gemma3-mm"].name
    lone.write_bytes(converted["gemma3-mm"].read_bytes())  # the model alone, no mmproj beside it
    image = write_png(tmp_path / "x.png", np.zeros((8, 8, 3)))
    session = ChatSession.load(lone, ChatSettings(seed=1, max_tokens=2, ctx_tokens=256, threads=1))
    try:
        assert "mmproj" in session.image_problem
        with pytest.raises(InvalidInput, match="cannot take images: no mmproj"):
            session.send("hi", images=[image])
    finally:
        session.close()
