"""The chat's "GPU + experts in RAM" placement (llama.cpp's --n-cpu-moe N): the tensor buffer
overrides reach llama.cpp's loader (its debug log names every overridden tensor), exactly the routed
experts of blocks 0..N-1 are overridden, the output does not change, and the placement is the
estimator's for the file and hardware."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_log import captured_llama_log
from quantpress.core.chat import ChatSession, ChatSettings, KVCacheType
from quantpress.core.chat.llama_loader import estimated_placement
from quantpress.core.chat.placement import LoadPlacement, cpu_moe_patterns, placement_from_estimate
from quantpress.core.estimate import estimate
from quantpress.core.hardware import GIB, detect_hardware
from quantpress.core.inspect import open_model
from quantpress.core.memory import RuntimeConfig
from tiny_models import tiny_model

THREADS = 1
CTX = 512
_OVERRIDDEN = re.compile(r"tensor (\S+) \(.*\) buffer type overridden to (\S+)")


@pytest.fixture(scope="module")
def moe_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen3-MoE (2 layers x 4 experts, top-2) converted by quantpress to Q4_K_M."""
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion

    root = tmp_path_factory.mktemp("cpu_moe")
    out = root / "gguf"
    out.mkdir()
    (result,) = convert(plan_conversion(open_model(tiny_model("qwen3moe", root)), ["Q4_K_M"], out))
    return Path(result.output)


@pytest.fixture()
def llama_log() -> Iterator[list[str]]:
    """Every line llama.cpp logs (debug level included) while the test runs."""
    with captured_llama_log() as lines:
        yield lines


def _greedy(path: Path, lines: list[str], **placement: int) -> tuple[list[int], set[str], str]:
    """Greedy reply token ids, the tensors llama.cpp logged as overridden, the placement shown."""
    del lines[:]
    settings = ChatSettings(temperature=0.0, seed=1, max_tokens=12, ctx_tokens=CTX, threads=THREADS, **placement)
    session = ChatSession.load(path, settings)
    try:
        llm = session.backend.llama  # type: ignore[attr-defined]
        prompt = llm.tokenize(b"The experts of a mixture", add_bos=True)
        out = []
        for token in llm.generate(prompt, temp=0.0, top_k=1):
            out.append(int(token))
            if len(out) == 12:
                break
        shown = session.memory().placement
    finally:
        session.close()
    overridden = {m.group(1) for line in lines if (m := _OVERRIDDEN.search(line))}
    return out, overridden, shown


def _repacked(path: Path, n_cpu_moe: int) -> set[str]:
    """The routed experts of blocks < n_cpu_moe that the estimator counts as repacked on this CPU."""
    from quantpress.core.memory import is_repacked, repacked_types

    types = repacked_types(detect_hardware().cpu_flags)
    return {t.name for t in open_model(path).tensors if "_exps." in t.name and int(t.name.split(".")[1]) < n_cpu_moe
            and is_repacked(t.name, t.shape, t.dtype, types)}


def test_patterns_are_llama_cpps() -> None:
    # common/common.h: llm_ffn_block_regex(i, LLM_FFN_EXPS_REGEX)
    assert cpu_moe_patterns(2) == (r"blk\.0\.ffn_(up|down|gate|gate_up)_(ch|)exps",
                                   r"blk\.1\.ffn_(up|down|gate|gate_up)_(ch|)exps")
    assert cpu_moe_patterns(0) == ()


def test_overrides_reach_llama_cpp_and_keep_the_output(moe_gguf: Path, llama_log: list[str]) -> None:
    plain, none_overridden, shown = _greedy(moe_gguf, llama_log, n_cpu_moe=0)
    assert none_overridden == set()
    assert shown.startswith("CPU")  # no GPU offload in this build: the chat says the model runs on the CPU
    for n in (1, 2):
        tokens, overridden, shown = _greedy(moe_gguf, llama_log, n_cpu_moe=n)
        expected = {f"blk.{i}.ffn_{p}_exps.weight" for i in range(n) for p in ("gate", "up", "down")}
        assert overridden == expected, llama_log
        assert tokens == plain  # where a weight lives does not change what it computes
        assert f"first {n} layers" in shown
        # to ggml's CPU buffer type, with the CPU's extra types: llama.cpp logs where each went, and the
        # repacked ones are those the estimator counts as repacked (core/estimate.py _experts_in_ram)
        went = {m.group(1): m.group(2) for line in llama_log if (m := _OVERRIDDEN.search(line))}
        assert {name for name, buft in went.items() if buft == "CPU_REPACK"} == _repacked(moe_gguf, n)
        assert set(went.values()) <= {"CPU", "CPU_REPACK"}
    if "avx2" in detect_hardware().cpu_flags:  # Q4_K experts repack on such a CPU: the check above compared something
        assert _repacked(moe_gguf, 1)


def test_negative_n_cpu_moe_is_refused(moe_gguf: Path) -> None:
    from quantpress.core.errors import InvalidInput

    with pytest.raises(InvalidInput, match="n-cpu-moe"):
        ChatSession.load(moe_gguf, ChatSettings(ctx_tokens=CTX, threads=THREADS, n_cpu_moe=-1))


def test_placement_is_the_estimators(moe_gguf: Path) -> None:
    """With a GPU one byte short of the full offload the chat loads "GPU + experts of the first
    layer in RAM": the estimate's smallest N, which the Fit pane and estimate --json show."""
    cfg = RuntimeConfig(n_ctx=CTX)
    hw = detect_hardware().with_overrides(vram_gib=64, ram_gib=64)
    full = estimate(open_model(moe_gguf), hw, cfg, formats=[]).formats[0]
    assert estimated_placement(moe_gguf, CTX, KVCacheType.F16, hw) == LoadPlacement(-1, 0, True)
    short = hw.with_overrides(vram_gib=(full.vram_bytes - 1) / GIB)
    row = estimate(open_model(moe_gguf), short, cfg, formats=[]).formats[0]
    assert row.fit != "gpu" and row.cpu_moe_layers == 1
    place = estimated_placement(moe_gguf, CTX, KVCacheType.F16, short)
    assert place == LoadPlacement(-1, 1, True)
    assert place.describe(2) == "GPU + experts of the first 1 of 2 layers in RAM"


def test_placement_words() -> None:
    assert placement_from_estimate("gpu", 2, 0).describe(2) == "GPU (all 2 layers)"
    assert placement_from_estimate("partial", 1, -1).describe(2) == "GPU: 1 of 2 layers, the rest on the CPU"
    assert placement_from_estimate("partial", 1, 2) == LoadPlacement(-1, 2, True)
    assert placement_from_estimate("cpu", 0, -1).describe(2) == "CPU (no layer fits the GPU)"
    assert LoadPlacement(0, 0, False).describe(2) == "CPU (no GPU offload in this llama.cpp build)"


def test_cli_chat_takes_n_cpu_moe(moe_gguf: Path, llama_log: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from quantpress.core.cli import main

    rc = main(["chat", str(moe_gguf), "--prompt", "Hello", "--temperature", "0", "--max-tokens", "4", "--seed", "1",
               "--ctx", str(CTX), "--threads", "1", "--n-cpu-moe", "1", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert "first 1 layers" in out["memory"]["placement"]
    assert {m.group(1) for line in llama_log if (m := _OVERRIDDEN.search(line))} == {
        f"blk.0.ffn_{p}_exps.weight" for p in ("gate", "up", "down")}
