"""Bad input over every command: each case must end with exactly one ``error:`` line and exit 2, no
traceback, nothing left in the output folder, the source unchanged, and no code from the model run.

The inputs are generated (tests/bad_inputs.py) from a tiny model: damaged safetensors headers, odd
config values, custom code and pickle folders, GGUF metadata of the wrong kind, unusable output paths,
damaged imatrix files. The commands run in-process through ``quantpress.core.cli.main``, so an
exception that escapes it (what a user would see as a traceback) fails the case by itself.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import GGUF_BREAKAGES, HF_BREAKAGES, break_gguf, edit_json
from quantpress.core.cli import main
from tiny_models import tiny_model

FAST_EVAL = ["--ctx", "32", "--tokens", "64", "--no-save"]
FAST_CHAT = ["--prompt", "hi", "--max-tokens", "2", "--ctx", "64", "--json"]
# Metadata-only commands never read weights, load tokenizers or import model code: breakages that only
# show in the weights' values or in code are theirs to describe, not to refuse.
METADATA_ONLY = ("inspect", "estimate")
HF_COMMANDS = ("inspect", "estimate", "convert", "eval", "awq", "chat")
GGUF_COMMANDS = ("inspect", "estimate", "convert", "eval", "chat", "unpack")
HF_NOT_REFUSED = {
    "nan weights": METADATA_ONLY,
    "custom model code": METADATA_ONLY,  # described as not convertible ("needs custom model code")
    "custom tokenizer code": METADATA_ONLY,
}
GGUF_NOT_REFUSED = {"nan weights": METADATA_ONLY}
# A compressed-tensors quantization_config makes chat load a folder with the AWQ backend (torch).
AWQ_CONFIG = {"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {}}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny SmolLM-style folder and its Q8_0 GGUF (norms stay F32)."""
    from quantpress.core.gguf.convert import convert
    from quantpress.core.gguf.plan import plan_conversion
    from quantpress.core.gguf.source import open_source

    root = tmp_path_factory.mktemp("bad_inputs")
    folder = tiny_model("smollm", root)
    plan = plan_conversion(open_source(folder), ["Q8_0"], root / "tiny.gguf", calibration="none")
    (gguf,) = convert(plan)
    return {"folder": folder, "gguf": Path(gguf.output)}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # eval's reference cache


def digest(path: Path) -> dict[str, str]:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {str(p.relative_to(path) if path.is_dir() else p.name): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        rc = main(argv)
    except BaseException as exc:  # noqa: BLE001 - anything escaping main is a traceback for the user
        pytest.fail(f"quantpress {' '.join(argv)}: {type(exc).__name__} escaped the CLI: {exc}")
    out, err = capsys.readouterr()
    return rc, out + err


def assert_refused(rc: int, text: str, out_root: Path) -> None:
    lines = text.replace("\r", "\n").splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert rc == 2, f"exit {rc}, expected 2:\n{text}"
    assert len(errors) == 1 and text.count("error:") == 1, f"expected one 'error:' line on its own:\n{text}"
    assert "Traceback" not in text
    left = sorted(str(p.relative_to(out_root)) for p in out_root.rglob("*"))
    assert not left, f"left behind in the output folder: {left}"


def command(name: str, model: Path, out: Path) -> list[str]:
    """The argv of ``name`` on ``model``, writing (if it writes) under ``out/new/sub`` (not yet there)."""
    dest = str(out / "new" / "sub")
    return {"inspect": ["inspect", str(model)], "estimate": ["estimate", str(model), "--ram", "8", "--vram", "0"],
            "convert": ["convert", str(model), "-f", "Q8_0", "--out", dest, "--calibration", "default"],
            "eval": ["eval", str(model), *FAST_EVAL], "chat": ["chat", str(model), *FAST_CHAT],
            "awq": ["awq", str(model), "--out", dest], "unpack": ["unpack", str(model), dest]}[name]


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "custom-code-ran"
    yield path
    assert not path.exists(), "code from the model folder ran"


def cases(breakages: Iterable[str], commands: Iterable[str], not_refused: dict[str, tuple[str, ...]]) -> list[object]:
    return [pytest.param(breakage, cmd, id=f"{cmd}-{breakage.replace(' ', '_')}")
            for breakage in breakages for cmd in commands if cmd not in not_refused.get(breakage, ())]


def refused_cleanly(cmd: str, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Run ``cmd`` on ``model``: one error line, exit 2, no output folder made, the model unchanged."""
    before = digest(model)
    out = tmp_path / "out"
    out.mkdir()
    rc, text = run_cli(command(cmd, model, out), capsys)
    assert_refused(rc, text, out)
    assert digest(model) == before


@pytest.mark.parametrize(("breakage", "cmd"), cases(HF_BREAKAGES, HF_COMMANDS, HF_NOT_REFUSED))
def test_bad_folder(breakage: str, cmd: str, base: dict[str, Path], tmp_path: Path, marker: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    folder = shutil.copytree(base["folder"], tmp_path / "model")
    if cmd == "chat":
        edit_json(folder / "config.json", lambda c: c.update(quantization_config=AWQ_CONFIG))
    HF_BREAKAGES[breakage](folder, marker)
    refused_cleanly(cmd, folder, tmp_path, capsys)


@pytest.mark.parametrize(("breakage", "cmd"), cases(GGUF_BREAKAGES, GGUF_COMMANDS, GGUF_NOT_REFUSED))
def test_bad_gguf(breakage: str, cmd: str, base: dict[str, Path], tmp_path: Path,
                  capsys: pytest.CaptureFixture[str]) -> None:
    refused_cleanly(cmd, break_gguf(base["gguf"], tmp_path / "model.gguf", breakage), tmp_path, capsys)


def test_the_generators_alone_break_nothing(base: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Controls: an untouched copy through the same helpers is accepted, so each case above fails
    for its breakage, not for the way the files were rewritten."""
    from bad_inputs import Gguf

    gguf = tmp_path / "same.gguf"
    Gguf(base["gguf"]).write(gguf)
    for argv in (["inspect", str(gguf)], ["eval", str(gguf), *FAST_EVAL], ["chat", str(gguf), *FAST_CHAT]):
        rc, text = run_cli(argv, capsys)
        assert rc == 0, text
    from bad_inputs import _read_st, _write_st

    folder = shutil.copytree(base["folder"], tmp_path / "model")
    _write_st(folder / "model.safetensors", *_read_st(folder / "model.safetensors"))
    rc, text = run_cli(["eval", str(folder), *FAST_EVAL], capsys)
    assert rc == 0, text


# ----------------------------------------------------------------------------- outputs


def _output_cases(base: dict[str, Path], tmp: Path) -> dict[str, list[str]]:
    model, gguf = base["folder"], tmp / "m.gguf"
    shutil.copy(base["gguf"], gguf)
    (tmp / "a-file").write_text("not a folder")
    (tmp / "out" / "taken.gguf").mkdir(parents=True)
    (tmp / "full").mkdir()
    (tmp / "full" / "x").write_text("x")
    (tmp / "link.gguf").symlink_to(gguf)
    return {
        "convert onto its source": ["convert", str(gguf), "-f", "Q8_0", "--out", str(gguf)],
        "convert onto its source by another path": ["convert", str(gguf), "-f", "Q8_0", "--out",
                                                    str(tmp / "out" / ".." / "m.gguf")],
        "convert onto a link to its source": ["convert", str(gguf), "-f", "Q8_0", "--out", str(tmp / "link.gguf")],
        "convert into a file": ["convert", str(model), "-f", "Q8_0", "--out", str(tmp / "a-file")],
        "convert below a file": ["convert", str(model), "-f", "Q8_0", "--out", str(tmp / "a-file" / "sub")],
        "convert onto a folder": ["convert", str(model), "-f", "Q8_0", "--out", str(tmp / "out" / "taken.gguf")],
        "save-plan onto a folder": ["convert", str(model), "-f", "Q8_0", "--dry-run", "--save-plan", str(tmp / "out")],
        "save-plan onto the source": ["convert", str(gguf), "-f", "Q8_0", "--dry-run", "--save-plan", str(gguf)],
        "save-plan below a file": ["convert", str(model), "-f", "Q8_0", "--dry-run", "--save-plan",
                                   str(tmp / "a-file" / "plan.json")],
        "unpack into a file": ["unpack", str(gguf), str(tmp / "a-file")],
        "unpack onto its source": ["unpack", str(gguf), str(gguf)],
        "unpack into a full folder": ["unpack", str(gguf), str(tmp / "full")],
        "unpack below a file": ["unpack", str(gguf), str(tmp / "a-file" / "sub")],
        "awq onto its source": ["awq", str(tmp / "src"), "--out", str(tmp / "src")],
        "awq into a file": ["awq", str(tmp / "src"), "--out", str(tmp / "a-file")],
        "awq onto a folder around its source": ["awq", str(tmp / "src"), "--out", str(tmp)],
    }


OUTPUT_CASES = ("convert onto its source", "convert onto its source by another path",
                "convert onto a link to its source", "convert into a file",
                "convert below a file", "convert onto a folder", "save-plan onto a folder", "save-plan onto the source",
                "save-plan below a file", "unpack into a file", "unpack onto its source", "unpack into a full folder",
                "unpack below a file", "awq onto its source", "awq into a file", "awq onto a folder around its source")


@pytest.mark.parametrize("case", OUTPUT_CASES)
def test_unusable_output(case: str, base: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(base["folder"], tmp_path / "src")
    argv = _output_cases(base, tmp_path)[case]
    before = {p: digest(p) for p in (tmp_path / "m.gguf", tmp_path / "src", tmp_path / "a-file", tmp_path / "full")}
    listing = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    rc, text = run_cli(argv, capsys)
    assert_refused(rc, text, tmp_path / "out" / "taken.gguf")
    assert {p: digest(p) for p in before} == before
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == listing, "something was created"


def test_replacing_an_existing_output_is_announced(base: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "m.gguf"
    target.write_bytes(b"an older conversion")
    rc, text = run_cli(["convert", str(base["folder"]), "-f", "Q8_0", "--out", str(target), "--calibration",
                        "none"], capsys)
    assert rc == 0, text
    assert f"note: {target} exists; it will be replaced" in text
    assert target.read_bytes()[:4] == b"GGUF"


# ----------------------------------------------------------------------------- imatrix files


def _imatrix(path: Path, values: np.ndarray) -> Path:
    """A legacy .dat imatrix with one entry for the first layer's q projection."""
    name = b"blk.0.attn_q.weight"
    body = struct.pack("<i", 1) + struct.pack("<i", len(name)) + name + struct.pack("<ii", 1, len(values))
    path.write_bytes(body + values.astype("<f4").tobytes())
    return path


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0], ids=["nan", "inf", "negative"])
def test_imatrix_with_bad_values(bad: float, base: dict[str, Path], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    values = np.ones(96, np.float32)
    values[5] = bad
    imatrix = _imatrix(tmp_path / "bad.dat", values)
    out = tmp_path / "out"
    out.mkdir()
    rc, text = run_cli(["convert", str(base["folder"]), "-f", "Q4_K_M", "--imatrix", str(imatrix), "--out",
                        str(out / "new")], capsys)
    assert_refused(rc, text, out)
    assert "NaN, Inf or negative" in text


# ----------------------------------------------------------------------------- foreign code


def test_custom_code_error_names_the_file_and_entry(base: dict[str, Path], tmp_path: Path, marker: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    folder = shutil.copytree(base["folder"], tmp_path / "model")
    HF_BREAKAGES["custom tokenizer code"](folder, marker)
    rc, text = run_cli(["eval", str(folder), *FAST_EVAL], capsys)
    assert rc == 2
    assert "model/tokenizer_config.json: auto_map entry 'AutoTokenizer': 'tokenization_evil.EvilTokenizer'" in text
    assert "never runs code from a model folder" in text


def test_auto_map_beside_a_builtin_class_is_harmless(base: dict[str, Path], tmp_path: Path, marker: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Phi-3 checkpoints carry auto_map entries for classes transformers has built in: with
    trust_remote_code=False transformers uses its own, so quantpress accepts them and no code runs."""
    folder = shutil.copytree(base["folder"], tmp_path / "model")
    (folder / "modeling_llama_copy.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    edit_json(folder / "config.json", lambda c: c.update(auto_map={
        "AutoModelForCausalLM": "modeling_llama_copy.LlamaForCausalLM"}))
    rc, text = run_cli(["eval", str(folder), *FAST_EVAL], capsys)
    assert rc == 0, text


def test_a_pickle_beside_safetensors_is_never_loaded(base: dict[str, Path], tmp_path: Path, marker: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from bad_inputs import _plant_pickle

    folder = shutil.copytree(base["folder"], tmp_path / "model")
    _plant_pickle(folder, marker)
    rc, text = run_cli(["eval", str(folder), *FAST_EVAL], capsys)
    assert rc == 0, text  # evaluated from model.safetensors; the marker fixture checks the pickle never ran


# ----------------------------------------------------------------------------- texts, options, sidecars


def _other_cases(base: dict[str, Path], tmp: Path) -> dict[str, list[str]]:
    gguf, folder = tmp / "m.gguf", base["folder"]
    shutil.copy(base["gguf"], gguf)
    (tmp / "empty.txt").write_text("")
    (tmp / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 200)
    (tmp / "short.txt").write_text("too short")
    (tmp / "m.gguf.json").write_text("{")  # a damaged sidecar beside the model
    return {
        "eval: empty text": ["eval", str(gguf), "--no-save", "--text", str(tmp / "empty.txt")],
        "eval: text not UTF-8": ["eval", str(gguf), "--no-save", "--text", str(tmp / "latin1.txt")],
        "eval: no such text": ["eval", str(gguf), "--no-save", "--text", str(tmp / "missing.txt")],
        "eval: damaged sidecar": ["eval", str(gguf), *FAST_EVAL[:-1]],
        "eval: reference is not a model": ["eval", str(gguf), *FAST_EVAL, "--reference", str(tmp / "empty.txt")],
        "convert: empty calibration text": ["convert", str(folder), "-f", "Q4_K_M", "--calibration",
                                            str(tmp / "empty.txt"), "--out", str(tmp / "out" / "new")],
        "convert: calibration text too short": ["convert", str(folder), "-f", "Q4_K_M", "--calibration",
                                                str(tmp / "short.txt"), "--out", str(tmp / "out" / "new")],
        "convert: no such imatrix": ["convert", str(folder), "-f", "Q4_K_M", "--imatrix", str(tmp / "none.dat"),
                                     "--out", str(tmp / "out" / "new")],
        "convert: imatrix is a model": ["convert", str(folder), "-f", "Q4_K_M", "--imatrix", str(gguf),
                                        "--out", str(tmp / "out" / "new")],
        "convert: unknown format": ["convert", str(folder), "-f", "Q3_X", "--out", str(tmp / "out" / "new")],
        "convert: bad tensor override": ["convert", str(folder), "-f", "Q8_0", "--tensor-type", "attn_q",
                                         "--out", str(tmp / "out" / "new")],
        "chat: context too small": ["chat", str(gguf), "--prompt", "hi", "--ctx", "8"],
        "unpack: not a GGUF file": ["unpack", str(tmp / "empty.txt"), str(tmp / "out" / "new")],
    }


OTHER_CASES = ("eval: empty text", "eval: text not UTF-8", "eval: no such text", "eval: damaged sidecar",
               "eval: reference is not a model", "convert: empty calibration text",
               "convert: calibration text too short", "convert: no such imatrix", "convert: imatrix is a model",
               "convert: unknown format", "convert: bad tensor override", "chat: context too small",
               "unpack: not a GGUF file")


@pytest.mark.parametrize("case", OTHER_CASES)
def test_bad_text_option_or_sidecar(case: str, base: dict[str, Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "out").mkdir()
    argv = _other_cases(base, tmp_path)[case]
    before = digest(tmp_path / "m.gguf")
    rc, text = run_cli(argv, capsys)
    assert_refused(rc, text, tmp_path / "out")
    assert digest(tmp_path / "m.gguf") == before
