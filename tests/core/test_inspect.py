"""Model intake from real files: the demo folder, its GGUF, tiny models of every family, bad input."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from quantpress.core.errors import InvalidModel
from quantpress.core.inspect import open_model, resolve_source
from quantpress.core.model import SourceKind
from tiny_models import tiny_model

ARCHS = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3": "gemma3", "phi3": "phi3"}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny")


def test_demo_folder(demo_model_dir: Path) -> None:
    info = open_model(demo_model_dir)
    assert info.kind == SourceKind.HF_FOLDER and info.architecture == "LlamaForCausalLM" and info.gguf_arch == "llama"
    assert (info.n_layers, info.n_heads, info.n_kv_heads, info.head_dim) == (30, 9, 3, 64)
    assert (info.hidden_size, info.ffn_size, info.vocab_size, info.context_length) == (576, 1536, 49152, 8192)
    assert info.n_params == 134_515_008 and info.tied_embeddings and info.convertible
    assert info.swa_layers == () and len(info.tensors) == 272


def test_demo_alias(demo_model_dir: Path) -> None:
    assert Path(resolve_source("demo")) == demo_model_dir
    assert open_model("demo").n_params == 134_515_008


def test_gguf_file_matches_folder(demo_model_dir: Path) -> None:
    from quantpress.core.demo import demo_gguf_path

    g = open_model(demo_gguf_path())
    f = open_model(demo_model_dir)
    assert g.kind == SourceKind.GGUF and g.dtype == "Q4_1" and g.gguf_arch == "llama"
    for field in ("n_params", "n_layers", "n_heads", "n_kv_heads", "head_dim", "hidden_size", "ffn_size",
                  "vocab_size", "context_length", "tied_embeddings"):
        assert getattr(g, field) == getattr(f, field), field


@pytest.mark.parametrize("arch", list(ARCHS))
def test_tiny_models_every_family(arch: str, tiny_dir: Path) -> None:
    folder = tiny_model(arch, tiny_dir)
    info = open_model(folder)
    config = json.loads((folder / "config.json").read_text())
    assert info.gguf_arch == ARCHS[arch] and info.convertible, info.not_convertible_reason
    assert info.n_layers == config["num_hidden_layers"] and info.n_heads == config["num_attention_heads"]
    assert info.n_kv_heads == config.get("num_key_value_heads", info.n_heads)
    assert info.n_params == sum(int(__import__("math").prod(t.shape)) for t in info.tensors)
    if arch == "gemma3":
        assert info.sliding_window and info.swa_layers
        assert all(i in info.swa_layers for i in range(info.n_layers) if config["layer_types"][i] == "sliding_attention")
    else:
        assert info.swa_layers == ()  # llama.cpp runs these archs with full attention
    if arch == "qwen2":  # the sharded checkpoint
        assert (folder / "model.safetensors.index.json").is_file() and len({t.file for t in info.tensors}) > 1


def _write_safetensors(path: Path, tensors: dict[str, tuple[list[int], str]]) -> None:
    header, offset = {}, 0
    for name, (shape, dtype) in tensors.items():
        n = 4 * int(__import__("math").prod(shape))
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)


def test_unknown_architecture_described_not_convertible(tmp_path: Path) -> None:
    cfg = {"architectures": ["MambaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100,
           "model_type": "mamba"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    _write_safetensors(tmp_path / "model.safetensors", {"backbone.embeddings.weight": ([100, 64], "F32")})
    info = open_model(tmp_path)
    assert not info.convertible and "MambaForCausalLM" in info.not_convertible_reason
    assert info.n_params == 6400 and info.hidden_size == 64 and info.n_layers == 2 and info.gguf_arch is None


def test_remote_code_model_is_flagged(tmp_path: Path) -> None:
    cfg = {"architectures": ["FancyForCausalLM"], "auto_map": {"AutoModelForCausalLM": "x.Fancy"}, "hidden_size": 8}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    _write_safetensors(tmp_path / "model.safetensors", {"w": ([2, 2], "F32")})
    info = open_model(tmp_path)
    assert not info.convertible and "remote code" in info.not_convertible_reason


# ---------------------------------------------------------------------------------- bad input


def _one_line(exc: pytest.ExceptionInfo[InvalidModel]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(InvalidModel) as exc:
        open_model(tmp_path)
    assert "no config.json" in _one_line(exc)


def test_truncated_safetensors_header(tmp_path: Path, demo_model_dir: Path) -> None:
    (tmp_path / "config.json").write_text((demo_model_dir / "config.json").read_text())
    good = tmp_path / "good.safetensors"
    _write_safetensors(good, {"a": ([4, 4], "F32")})
    (tmp_path / "model.safetensors").write_bytes(good.read_bytes()[:20])
    good.unlink()
    with pytest.raises(InvalidModel) as exc:
        open_model(tmp_path)
    assert "truncated safetensors header" in _one_line(exc) and "model.safetensors" in str(exc.value)


def test_truncated_safetensors_data(tmp_path: Path, demo_model_dir: Path) -> None:
    (tmp_path / "config.json").write_text((demo_model_dir / "config.json").read_text())
    path = tmp_path / "model.safetensors"
    _write_safetensors(path, {"a": ([64, 64], "F32")})
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InvalidModel) as exc:
        open_model(tmp_path)
    assert "truncated safetensors file" in _one_line(exc)


def test_gguf_bad_magic(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGML" + b"\0" * 100)
    with pytest.raises(InvalidModel) as exc:
        open_model(bad)
    msg = _one_line(exc)
    assert "model.gguf" in msg and ("magic" in msg.lower() or "not a gguf" in msg.lower())


def test_pickle_checkpoint_refused_never_unpickled(tmp_path: Path, demo_model_dir: Path) -> None:
    (tmp_path / "config.json").write_text((demo_model_dir / "config.json").read_text())
    marker = tmp_path / "pwned"
    # A pickle that would create a file if anyone unpickled it.
    payload = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    (tmp_path / "pytorch_model.bin").write_bytes(payload)
    with pytest.raises(InvalidModel) as exc:
        open_model(tmp_path)
    assert "pickle" in _one_line(exc) and "never unpickles" in str(exc.value)
    with pytest.raises(InvalidModel) as exc:
        open_model(tmp_path / "pytorch_model.bin")
    assert "pickle" in _one_line(exc)
    assert not marker.exists()


def test_missing_path_and_bad_repo_id(tmp_path: Path) -> None:
    with pytest.raises(InvalidModel) as exc:
        open_model(tmp_path / "nope")
    assert "no such file or folder" in _one_line(exc)


def test_inspect_cli_text_and_json(demo_model_dir: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "quantpress.core.cli", "inspect", str(demo_model_dir), "--json"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["params"] == 134_515_008 and data["architecture"] == "LlamaForCausalLM" and len(data["tensors"]) == 272
    out = subprocess.run([sys.executable, "-m", "quantpress.core.cli", "inspect", str(demo_model_dir)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0 and "parameters" in out.stdout and "134,515,008" in out.stdout
    # The CLI's one-line error for bad input
    out = subprocess.run([sys.executable, "-m", "quantpress.core.cli", "inspect", "/nonexistent/folder"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and out.stderr.count("\n") == 1
