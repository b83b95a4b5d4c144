"""The best-fit planner's measured losses, kept on disk per model so that planning it again is quick.

Most of a plan's time goes into measuring (core/gguf/best_fit.py: every candidate type's error on a
sample of every tensor, the runtime probe's runs of the model, the lossless checks); choosing types
for a target from those measurements takes a fraction of a second. A user plans one model several
times — a dry run then the real one, another size, the Fit pane at another context — and each of
those would measure the same things again. So the measurements are saved, keyed by everything they
depend on:

- the model's files (size, mtime and a hash of the first MiB of its config, tokenizer and weight
  files: core/evaluate/reference.py ``file_fingerprint``) and the tensors the plan lists;
- the importance source (its kind and, for a file, that file's fingerprint), the built-in
  calibration text (the probe runs the model on it), the engine, the sensitivity asked for;
- the code that measures (a hash of the modules' source) and the versions of quantpress,
  llama-cpp-python (the probe's runtime and ggml's quantizer) and gguf.

A measurement that fell back for a reason that may pass (the probe could not run: no room for its
copy, say; torch missing for ``fisher``) is not kept: the next plan tries again. The entry is JSON (floats round-trip exactly, so a plan made from the cache is
the plan made by measuring), written under a temporary name and renamed; the newest MAX_ENTRIES stay,
in ``<quantpress's cache>/best-fit`` or $QUANTPRESS_LOSS_CACHE_DIR.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import math
import os
import threading
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from quantpress.core.gguf.tensor_errors import TensorErrors
from quantpress.core.signals import LOSS_CACHE_TMP, remove_stale

CACHE_FORMAT = 1
CACHE_DIR_ENV = "QUANTPRESS_LOSS_CACHE_DIR"
MAX_ENTRIES = 32
# Files of an HF folder whose content the measurements depend on (weights: every *.safetensors).
MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json")
# Modules whose code decides the measured numbers: a change to any of them is a new key.
MEASURING_MODULES = (
    "quantpress.core.gguf.best_fit",
    "quantpress.core.gguf.tensor_errors",
    "quantpress.core.gguf.runtime_probe",
    "quantpress.core.gguf.convert",
    "quantpress.core.calibration.sensitivity",
    "quantpress.core.calibration.weights",
    "quantpress.core.quant",
    "quantpress.core.quant.auto",
    "quantpress.core.quant.unit_gain",
)


@dataclass
class Measured:
    """What best_fit's measurement found for one model: every tensor's losses, the sensitivity's
    source, the warnings it raised, and the lossless checks made so far ((tensor, type) -> lossless);
    ``keep``: False where it fell back for a reason that may be gone next time (not saved)."""

    errors: dict[str, TensorErrors]
    source: str
    notes: list[str]
    exact: dict[tuple[str, str], bool] = field(default_factory=dict)
    keep: bool = True


def cache_folder() -> Path:
    """$QUANTPRESS_LOSS_CACHE_DIR, else the ``best-fit`` folder of quantpress's cache."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    from quantpress.core.paths import cache_dir

    return Path(cache_dir()) / "best-fit"


def key(base: Any, *, sensitivity: str, engine: str) -> str | None:
    """The cache key of a best-fit measurement of the conversion plan ``base`` (None: a model with
    no local files, which cannot be fingerprinted)."""
    from quantpress.core.calibration.text import default_calibration_text
    from quantpress.core.evaluate.reference import file_fingerprint

    if not base.local_path:
        return None
    source = Path(base.local_path)
    if source.is_dir():
        files = [source / n for n in MODEL_FILES] + sorted(source.glob("*.safetensors"))
    else:
        files = [source]
    calibration = base.calibration
    importance_file = Path(calibration.path) if calibration.path else None
    blob = json.dumps({
        "format": CACHE_FORMAT,
        "code": _code_hash(),
        "versions": [_version(p) for p in ("quantpress", "llama_cpp_python", "gguf")],
        "model": [file_fingerprint(f) for f in files if f.is_file()],
        "tensors": [[t.name, list(t.shape), t.source, t.source_dtype, list(t.transforms)] for t in base.tensors],
        "calibration": [calibration.kind.value, file_fingerprint(importance_file)
                        if importance_file is not None and importance_file.is_file() else None],
        "sensitivity": sensitivity,
        "engine": engine,
        # the probe runs the model on the built-in text, as the importance of --calibration default does
        "text": hashlib.sha256(default_calibration_text().encode("utf-8")).hexdigest(),
    }, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def load(cache_key: str | None) -> Measured | None:
    """The measurement saved under ``cache_key``, or None (none saved, or not readable: measure again)."""
    if cache_key is None:
        return None
    path = cache_folder() / f"{cache_key}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != CACHE_FORMAT:
            return None
        errors = {str(n): _tensor_errors(e) for n, e in data["errors"].items()}
        exact = {(n, t): bool(v) for n, t, v in data["exact"]}
        measured = Measured(errors, str(data["source"]), [str(w) for w in data["notes"]], exact)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # the newest entries are the ones kept
    return measured


def _tensor_errors(e: dict[str, Any]) -> TensorErrors:
    """One saved TensorErrors, every field of its type (ValueError/TypeError/KeyError where not)."""
    loss = {str(t): float(v) for t, v in e["loss"].items()}
    numbers = [float(e["signal"]), float(e["relative_se"]), *loss.values()]
    if not all(math.isfinite(v) and v >= 0 for v in numbers):
        raise ValueError("a saved loss is not a finite non-negative number")
    return TensorErrors(str(e["name"]), int(e["rows"]), int(e["sampled_rows"]), float(e["signal"]), loss,
                        float(e["relative_se"]))


def save(cache_key: str | None, measured: Measured) -> None:
    """Keep ``measured`` under ``cache_key``; a cache that cannot be written is not an error."""
    if cache_key is None:
        return
    folder = cache_folder()
    data = {"format": CACHE_FORMAT, "source": measured.source, "notes": measured.notes,
            "errors": {n: asdict(e) for n, e in measured.errors.items()},
            "exact": [[n, t, v] for (n, t), v in measured.exact.items()]}
    # named by process and thread (core.signals.LOSS_CACHE_TMP): a planner killed before its rename
    # leaves it, and the next save removes it
    tmp = folder / f".{cache_key}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, folder / f"{cache_key}.json")
        _prune(folder)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _prune(folder: Path) -> None:
    """Only the newest MAX_ENTRIES, and no temporary file of a planner that died before its rename."""
    entries = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in entries[MAX_ENTRIES:]:
        with contextlib.suppress(OSError):
            old.unlink()
    remove_stale(folder, LOSS_CACHE_TMP)


def _code_hash() -> str:
    h = hashlib.sha256()
    for name in MEASURING_MODULES:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        h.update(name.encode())
        if origin and Path(origin).is_file():
            h.update(Path(origin).read_bytes())
    return h.hexdigest()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"
