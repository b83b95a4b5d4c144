"""Describe a Hugging Face Hub model from metadata only: config.json, tokenizer files and the
safetensors headers (HTTP range requests), through huggingface_hub's own functions, so the user's
login token (``huggingface-cli login`` / ``HF_TOKEN``) opens gated and private repos.

    open_hub_model("HuggingFaceTB/SmolLM2-135M-Instruct") -> ModelInfo (local_path = a small folder
    with config + tokenizer files, no weights, which is what the converter's plan needs)

Reachability is decided once with a short TCP probe (huggingface_hub would retry an unreachable
host for ~24 s). With ``HF_HUB_OFFLINE=1`` or no network, a model described before is served
from quantpress's cache; otherwise the error says we are offline (not that the repo is missing).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path
from urllib.parse import urlparse

from quantpress.core.errors import InvalidModel, NetworkUnavailable
from quantpress.core.model import ModelInfo, SourceKind, TensorInfo

SMALL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "tokenizer.model", "special_tokens_map.json")
HEADERS_FILE = "quantpress_safetensors_headers.json"
PROBE_TIMEOUT_S = 2.0


def endpoint() -> str:
    from huggingface_hub import constants

    return str(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def is_offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE")
    return flag.upper() in ("1", "ON", "YES", "TRUE") if flag is not None else bool(constants.HF_HUB_OFFLINE)


def reachable(url: str | None = None, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """One TCP connect to the Hub endpoint: cheap, and never the 24 s retry loop."""
    parsed = urlparse(url or endpoint())
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def cache_folder(repo_id: str) -> Path:
    from quantpress.core.paths import cache_dir

    return cache_dir() / "hub" / repo_id.replace("/", "--")


def _fetch(repo_id: str, folder: Path) -> None:
    """Download the small files and the safetensors headers into ``folder`` (atomically)."""
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import NotASafetensorsRepoError
    from quantpress.core.hub_download import hub_errors

    api = HfApi(endpoint=endpoint())
    with hub_errors(repo_id):  # gated, missing, HTTP errors -> quantpress errors (GatedRepo lets the GUI ask)
        info = api.model_info(repo_id)
    names = {s.rfilename for s in (info.siblings or [])}
    if "config.json" not in names:
        raise InvalidModel(f"{repo_id}: the repo has no config.json; it is not a Transformers model")
    if not any(n.endswith(".safetensors") for n in names):
        pickles = sorted(n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt")))
        if pickles:
            raise InvalidModel(f"{repo_id}: only pickle checkpoints ({', '.join(pickles[:2])}); quantpress never "
                               "unpickles. Pick a repo with .safetensors weights")
        raise InvalidModel(f"{repo_id}: no .safetensors weights in the repo")
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with hub_errors(repo_id):
            for name in SMALL_FILES:
                if name in names:
                    hf_hub_download(repo_id, name, local_dir=staging, endpoint=endpoint())
            meta = api.get_safetensors_metadata(repo_id)
    except NotASafetensorsRepoError:
        shutil.rmtree(staging, ignore_errors=True)
        raise InvalidModel(f"{repo_id}: no model.safetensors or model.safetensors.index.json") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    headers = {fname: {name: {"dtype": t.dtype, "shape": list(t.shape)} for name, t in fm.tensors.items()}
               for fname, fm in meta.files_metadata.items()}
    (staging / HEADERS_FILE).write_text(json.dumps(headers))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def _describe(repo_id: str, folder: Path) -> ModelInfo:
    from quantpress.core.inspect import describe_config, tensors_from_header
    from quantpress.core.validate import check_config, check_weights_match_config, read_config

    config = read_config(folder)
    check_config(config, f"{repo_id}/config.json")
    headers = json.loads((folder / HEADERS_FILE).read_text())
    tensors: list[TensorInfo] = []
    for fname in sorted(headers):
        tensors += tensors_from_header(headers[fname], fname)
    from quantpress.core.dequant import dequantized_tensors

    tensors = dequantized_tensors(config, tensors, repo_id, strict=False)  # quantized: as the float model
    check_weights_match_config(config, tensors, repo_id)
    return describe_config(config, tuple(tensors), source=repo_id, kind=SourceKind.HUB, local_path=folder,
                           name=repo_id.split("/")[-1])


def open_hub_model(repo_id: str, *, refresh: bool = False) -> ModelInfo:
    """Describe ``repo_id`` from the Hub (or from the cache of an earlier look when offline)."""
    folder = cache_folder(repo_id)
    cached = (folder / HEADERS_FILE).is_file()
    if is_offline() or not reachable():
        if cached:
            return _describe(repo_id, folder)
        why = "HF_HUB_OFFLINE is set" if is_offline() else f"{endpoint()} cannot be reached"
        raise NetworkUnavailable(f"{repo_id}: offline ({why}) and not looked at before; connect and retry, "
                                 "or give a local folder")
    if refresh or not cached:
        _fetch(repo_id, folder)
    return _describe(repo_id, folder)
