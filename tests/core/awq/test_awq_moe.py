"""AWQ on mixture-of-experts models: a clear refusal at plan time naming the family, never a crash.

Per-expert AWQ (scales searched per routed expert on the tokens routed to it) is not implemented;
the refusal says so and points at the GGUF formats, which quantize every expert."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from quantpress.core.awq.groups import arch_for, unsupported_reason
from quantpress.core.awq.run import plan_awq
from quantpress.core.cli import main
from quantpress.core.errors import UnsupportedArchitecture

MOE_CLASSES = {"qwen3moe": "Qwen3MoeForCausalLM", "mixtral": "MixtralForCausalLM"}


@pytest.mark.parametrize("arch", sorted(MOE_CLASSES))
def test_plan_refuses_moe_naming_the_family(tiny, arch: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnsupportedArchitecture) as err:
        plan_awq(tiny(arch))
    text = str(err.value)
    assert f"'{MOE_CLASSES[arch]}' ({arch})" in text and "mixture-of-experts" in text and "GGUF" in text


@pytest.mark.parametrize("arch", sorted(MOE_CLASSES))
def test_cli_refuses_before_writing_anything(tiny, arch: str, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out" / "awq"
    for extra in ([], ["--json"], ["--json", "--plan"], ["--format", "gguf:Q4_K_M"]):
        assert main(["awq", str(tiny(arch)), "--out", str(out), *extra]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""  # --json prints no half result
        assert captured.err.startswith("error: AWQ does not support mixture-of-experts models yet")
        assert MOE_CLASSES[arch] in captured.err and "Traceback" not in captured.err
        assert not (tmp_path / "out").exists()


def test_reasons() -> None:
    assert unsupported_reason("LlamaForCausalLM") is None
    for cls in ("GptOssForCausalLM", "DeepseekV3ForCausalLM", "Glm4MoeForCausalLM", "OlmoeForCausalLM",
                "Qwen2MoeForCausalLM"):
        assert "mixture-of-experts" in (unsupported_reason(cls) or ""), cls
    assert "no scaling-group map" in (unsupported_reason("Gemma2ForCausalLM") or "")
    with pytest.raises(UnsupportedArchitecture, match="supported: "):
        arch_for("NoSuchForCausalLM")
    json.dumps(unsupported_reason("MixtralForCausalLM"))  # a plain string, fit for --json and the GUI
