"""Download a Hub model for conversion, into huggingface_hub's own cache, with byte progress and cancel.

    plan = plan_download("HuggingFaceTB/SmolLM2-135M-Instruct")   # file list and sizes, nothing big fetched
    path = download_model("HuggingFaceTB/SmolLM2-135M-Instruct", report=..., cancel=...)
    open_model(path)                                              # an ordinary HF folder (the snapshot)

Only what conversion reads is fetched: config.json, the safetensors weights (the index and the shards it
lists, or model.safetensors), tokenizer and chat-template files and generation_config.json. Pickle
checkpoints (.bin/.pt) are never fetched; a pickle-only repo is refused. A GGUF-only repo gives its one
.gguf file (or the one named with ``filename``).

The transfer is huggingface_hub's ``hf_hub_download`` (its cache layout, resume, Xet and token
handling), one file at a time so cancel is checked between files; within a file its ``tqdm_class``
hook counts bytes and is where cancel is checked (each 10 MB chunk). The token is huggingface_hub's own
(``hf auth login``, ``HF_TOKEN`` or :func:`login_token`), never a quantpress setting.

huggingface_hub's cache is read and changed only through its own APIs: a cancelled or failed download
deletes the revision it created (``scan_cache_dir().delete_revisions``), so no snapshot folder looks like
a complete model (a retry fetches those files again), plus the partial ``.incomplete`` blob of the file
in flight, for which huggingface_hub has no API. Offline, an earlier complete download is found with
``snapshot_download(local_files_only=True)`` / ``try_to_load_from_cache``; which repo a snapshot
folder belongs to, with ``scan_cache_dir``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantpress.core.disk import DiskFree, require_free_space
from quantpress.core.errors import (
    Cancelled,
    GatedRepo,
    InvalidInput,
    InvalidModel,
    NetworkUnavailable,
)
from quantpress.core.jobs import NEVER, CancelToken, Progress, Report, Throttle, ignore
from quantpress.core.paths import hub_cache_dir, models_dir

CONFIG = "config.json"
INDEX = "model.safetensors.index.json"
SUPPORT_FILES = frozenset({
    CONFIG, "generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
    "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja",
    "chat_template.json",
})
SUPPORT_FOLDERS = ("additional_chat_templates/",)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
HEADROOM_BYTES = 64 * 2**20  # lock files, the .incomplete of the file in flight, filesystem slack


@dataclass(frozen=True)
class HubFile:
    name: str
    n_bytes: int
    cached: bool  # already in the local cache for this commit: not fetched again


@dataclass(frozen=True)
class DownloadPlan:
    """What :func:`download_model` will fetch, known before the transfer starts."""

    repo_id: str
    revision: str  # what the user asked for ('main' by default)
    commit: str  # the commit it resolved to: every file comes from this one commit
    files: tuple[HubFile, ...]
    cache_dir: str  # huggingface_hub's hub cache
    gguf_file: str | None = None  # set for a GGUF-only repo: the path returned is this file

    @property
    def total_bytes(self) -> int:
        return sum(f.n_bytes for f in self.files)

    @property
    def missing_bytes(self) -> int:
        return sum(f.n_bytes for f in self.files if not f.cached)

    @property
    def snapshot_dir(self) -> Path:
        return Path(self.cache_dir) / _repo_folder(self.repo_id) / "snapshots" / self.commit  # HF's layout

    @property
    def result_path(self) -> Path:
        return self.snapshot_dir / self.gguf_file if self.gguf_file else self.snapshot_dir


@dataclass(frozen=True)
class DownloadResult:
    repo_id: str
    path: Path  # the snapshot folder, or the GGUF file of a GGUF-only repo
    files: tuple[str, ...]
    n_bytes: int
    seconds: float


def mb(n_bytes: int) -> str:
    """Decimal megabytes, as the Hub's own pages show file sizes."""
    return f"{n_bytes / 1e6:,.1f}"


# ------------------------------------------------------------------------------- errors and paths


def _repo_folder(repo_id: str) -> str:
    from huggingface_hub.file_download import repo_folder_name

    return str(repo_folder_name(repo_id=repo_id, repo_type="model"))


def _cached_revisions(repo_id: str | None = None) -> list[tuple[str, Any]]:
    """(repo id, huggingface_hub's CachedRevisionInfo) of every model revision in its cache (of
    ``repo_id`` only, if given), newest first; empty when there is no cache yet."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound, CorruptedCacheException

    try:
        info = scan_cache_dir(hub_cache_dir())
    except (CacheNotFound, CorruptedCacheException, OSError):
        return []
    found = [(repo.repo_id, rev) for repo in info.repos
             if repo.repo_type == "model" and repo_id in (None, repo.repo_id) for rev in repo.revisions]
    return sorted(found, key=lambda r: -r[1].last_modified)


def repo_of_snapshot(folder: Path) -> str | None:
    """'org/name' when ``folder`` is a snapshot in huggingface_hub's cache, else None."""
    try:
        Path(folder).resolve().relative_to(hub_cache_dir().resolve())
    except (ValueError, OSError):
        return None  # not below the cache: no need to scan it
    folder = Path(folder).resolve()
    if folder not in _SNAPSHOT_REPOS:  # a scan stats the whole cache: the estimator asks once per format
        repo = next((repo for repo, rev in _cached_revisions() if Path(rev.snapshot_path).resolve() == folder), None)
        if repo is None:
            return None
        _SNAPSHOT_REPOS[folder] = repo
    return _SNAPSHOT_REPOS[folder]


_SNAPSHOT_REPOS: dict[Path, str] = {}  # snapshot folder -> repo id (a snapshot never changes repo)


def output_parent(local_path: Path) -> Path:
    """Where outputs beside a model go: next to it, except for a Hub cache snapshot, whose folder
    belongs to huggingface_hub (a stray file there breaks ``hf cache`` scans): quantpress's models folder."""
    folder = local_path if local_path.is_dir() else local_path.parent
    if repo_of_snapshot(folder) is None:
        return local_path.parent
    return models_dir()


def _gated_message(repo_id: str) -> str:
    from quantpress.core.hub import endpoint

    return (f"{repo_id} is gated (or private): accept its terms on {endpoint()}/{repo_id} while logged in, "
            "create a read access token at https://huggingface.co/settings/tokens, and log in with it "
            "(`hf auth login`, or the token prompt of the app). Then retry")


@contextlib.contextmanager
def hub_errors(repo_id: str, revision: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub's exceptions into quantpress errors written for the user."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    network: tuple[type[BaseException], ...] = (OfflineModeIsEnabled, LocalEntryNotFoundError, *_transport_errors())
    try:
        yield
    except GatedRepoError:  # a subclass of RepositoryNotFoundError: first
        raise GatedRepo(_gated_message(repo_id), repo_id) from None
    except RepositoryNotFoundError:
        raise InvalidModel(f"{repo_id}: no such model on the Hub (or it is private and you are not logged "
                           "in: `hf auth login`)") from None
    except RevisionNotFoundError:
        raise InvalidInput(f"{repo_id}: no revision '{revision}' (a branch, tag or commit of the repo)") from None
    except network as exc:  # before EntryNotFoundError: LocalEntryNotFoundError is one
        raise NetworkUnavailable(f"{repo_id}: the connection to the Hub failed ({type(exc).__name__}); connect "
                                 "and retry (files already downloaded are kept)") from None
    except EntryNotFoundError as exc:
        raise InvalidModel(f"{repo_id}: a file the repo lists is missing on the Hub ({exc})") from None
    except HfHubHTTPError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NetworkUnavailable(f"{repo_id}: the Hub answered with an error ({first}); retry later") from None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's connection errors (huggingface_hub 2.x uses httpx2, 1.x httpx)."""
    found: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        try:
            found.append(__import__(name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def _online() -> bool:
    """Decided once with a short probe: huggingface_hub would retry an unreachable host for ~24 s."""
    from quantpress.core.hub import is_offline, reachable

    return not is_offline() and reachable()


def _offline_error(repo_id: str) -> NetworkUnavailable:
    from quantpress.core.hub import endpoint, is_offline

    why = "HF_HUB_OFFLINE is set" if is_offline() else f"{endpoint()} cannot be reached"
    return NetworkUnavailable(f"{repo_id}: offline ({why}) and not downloaded before; connect and retry")


# ------------------------------------------------------------------------------------ planning


def _select(repo_id: str, sizes: dict[str, int], filename: str | None,
            read_index: Callable[[], dict[str, Any]]) -> tuple[list[str], str | None]:
    """The files conversion needs (weights last), and the GGUF file name for a GGUF-only repo."""
    top = [n for n in sizes if "/" not in n]
    safetensors = sorted(n for n in top if n.endswith(".safetensors"))
    ggufs = sorted(n for n in top if n.lower().endswith(".gguf"))
    if filename is not None:
        if filename not in ggufs:
            raise InvalidInput(f"{repo_id}: '{filename}' is not a .gguf file of the repo"
                               + (f"; its .gguf files: {', '.join(ggufs[:8])}" if ggufs else ""))
        return [filename], filename
    support = sorted(n for n in sizes if n in SUPPORT_FILES or n.startswith(SUPPORT_FOLDERS))
    if safetensors:
        if CONFIG not in sizes:
            raise InvalidModel(f"{repo_id}: the repo has no config.json; it is not a Transformers model")
        if INDEX in sizes:
            try:
                shards = sorted(set(read_index()["weight_map"].values()))
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                raise InvalidModel(f"{repo_id}: {INDEX} is not a valid safetensors index ({exc})") from None
            missing = [s for s in shards if s not in sizes]
            if missing:
                raise InvalidModel(f"{repo_id}: {INDEX} lists shards the repo lacks ({', '.join(missing[:3])})")
            return support + [INDEX] + shards, None
        weights = ["model.safetensors"] if "model.safetensors" in sizes else safetensors
        return support + weights, None
    if ggufs:
        if len(ggufs) == 1:
            return ggufs, ggufs[0]
        raise InvalidInput(f"{repo_id}: a GGUF repo with {len(ggufs)} files; name the one to convert "
                           f"(`quantpress download {repo_id} --file NAME`): {', '.join(ggufs[:8])}")
    pickles = sorted(n for n in top if n.lower().endswith(PICKLE_SUFFIXES))
    if pickles:
        raise InvalidModel(f"{repo_id}: only pickle checkpoints ({', '.join(pickles[:2])}); quantpress never "
                           "downloads or unpickles them (loading a pickle can run code). Pick a repo with "
                           ".safetensors weights")
    raise InvalidModel(f"{repo_id}: no .safetensors or .gguf weights at the top of the repo")


def plan_download(repo_id: str, *, revision: str | None = None, filename: str | None = None) -> DownloadPlan:
    """List the files to fetch with their sizes (one model_info call, plus the small shard index)."""
    if not _online():
        raise _offline_error(repo_id)
    return _plan(repo_id, revision, filename)


def _plan(repo_id: str, revision: str | None, filename: str | None) -> DownloadPlan:
    from huggingface_hub import HfApi, hf_hub_download, try_to_load_from_cache
    from quantpress.core.hub import endpoint

    cache = hub_cache_dir()
    with hub_errors(repo_id, revision):
        info = HfApi(endpoint=endpoint()).model_info(repo_id, revision=revision, files_metadata=True)
        commit = str(info.sha or revision or "main")
        sizes = {s.rfilename: int(s.size if s.size is not None else (s.lfs.size if s.lfs else 0))
                 for s in info.siblings or []}

        def read_index() -> dict[str, Any]:
            path = hf_hub_download(repo_id, INDEX, revision=commit, cache_dir=cache, endpoint=endpoint())
            return dict(json.loads(Path(str(path)).read_text()))

        names, gguf = _select(repo_id, sizes, filename, read_index)
    files = tuple(HubFile(n, sizes[n], isinstance(try_to_load_from_cache(repo_id, n, cache_dir=cache,
                                                                         revision=commit), str))
                  for n in names)
    return DownloadPlan(repo_id, revision or "main", commit, files, str(cache), gguf)


def check_disk_space(plan: DownloadPlan, disk_free: DiskFree | None = None) -> None:
    """Refuse before the transfer starts when the cache's filesystem cannot hold what is missing."""
    require_free_space(Path(plan.cache_dir), plan.missing_bytes, what=f"downloading {plan.repo_id}",
                       disk_free=disk_free, margin=HEADROOM_BYTES,
                       advice="Free some space, or set HF_HUB_CACHE to a folder on a bigger disk.")


# ------------------------------------------------------------------------------------ transfer


class _ByteMeter:
    """Turns per-file byte counts into one monotone fraction of the whole download; the cancel point
    inside a file (huggingface_hub calls ``update`` once per received chunk)."""

    def __init__(self, plan: DownloadPlan, report: Report, cancel: CancelToken) -> None:
        self.total = plan.total_bytes
        self.finished = 0  # bytes of files done
        self.current = 0  # bytes of the file in flight
        self.current_size = 0
        self.name = ""
        self.best = 0
        self.cancel = cancel
        self.report = Throttle(report)

    def start(self, f: HubFile) -> None:
        self.cancel.raise_if_cancelled()
        self.name, self.current, self.current_size = f.name, 0, f.n_bytes

    def add(self, n_bytes: int) -> None:
        self.cancel.raise_if_cancelled()
        self.current = min(max(self.current + n_bytes, 0), self.current_size)
        self.emit()

    def finish(self, f: HubFile) -> None:
        self.finished += f.n_bytes
        self.current = 0
        self.emit()

    def emit(self) -> None:
        # A resumed or restarted transfer may step back (huggingface_hub rewinds its bar): never show that.
        self.best = max(self.best, self.finished + self.current)
        fraction = min(self.best / self.total, 1.0) if self.total else 1.0
        self.report(Progress("download", fraction, f"{self.name}: {mb(self.best)} of {mb(self.total)} MB",
                             self.best, self.total))


def _bar_class(meter: _ByteMeter) -> type:
    """A tqdm stand-in for ``hf_hub_download(tqdm_class=...)``: it shows nothing and feeds the meter.
    Not a tqdm subclass on purpose: huggingface_hub then passes it no ``disable`` flag, so it is never
    silenced (non-TTY, HF_HUB_DISABLE_PROGRESS_BARS). ``update_transfer`` makes Xet downloads use one
    bar: ``update`` counts bytes written, ``update_transfer`` (network bytes) is only a cancel point."""

    class _Bar:
        def __init__(self, *args: Any, total: int | None = None, initial: int = 0, **kwargs: Any) -> None:
            self.n = 0
            self.total = total
            if initial:
                self.update(initial)

        def update(self, n: float | None = 1) -> None:
            step = int(n or 0)
            self.n += step
            meter.add(step)

        def update_transfer(self, n: float | None = 1) -> None:
            meter.cancel.raise_if_cancelled()

        def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
            pass

        set_transfer_postfix_str = set_postfix_str
        set_description = set_postfix_str
        refresh = set_postfix_str
        close = set_postfix_str

        def __enter__(self) -> _Bar:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    return _Bar


def _byte_hook_supported() -> bool:
    from huggingface_hub import hf_hub_download

    return "tqdm_class" in inspect.signature(hf_hub_download).parameters  # huggingface_hub >= 1.2


def _undo(repo_id: str, revisions_before: set[str], partial_before: set[Path]) -> None:
    """Delete the revisions this run added to the cache (through huggingface_hub) and the partial blob
    of the file in flight: no half model folder is left to look like a model."""
    from huggingface_hub import scan_cache_dir

    new = {rev.commit_hash for _, rev in _cached_revisions(repo_id)} - revisions_before
    if new:
        scan_cache_dir(hub_cache_dir()).delete_revisions(*new).execute()
    for path in _partials(repo_id) - partial_before:
        path.unlink(missing_ok=True)


def _partials(repo_id: str) -> set[Path]:
    """huggingface_hub's resumable partial downloads of ``repo_id`` (it has no API to list or drop them)."""
    return set((hub_cache_dir() / _repo_folder(repo_id) / "blobs").glob("*.incomplete"))


def _complete_files(folder: Path) -> tuple[str, ...] | None:
    """The files of a complete model snapshot (config and every weight file it needs), else None."""
    if not (folder / CONFIG).is_file():
        return None
    index = folder / INDEX
    try:
        shards = set(json.loads(index.read_text())["weight_map"].values()) if index.is_file() else set()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not all((folder / s).is_file() for s in shards) or not (shards or (folder / "model.safetensors").is_file()):
        return None
    return tuple(sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()))


def _earlier(repo_id: str, revision: str | None, filename: str | None) -> tuple[Path, tuple[str, ...]] | None:
    """A complete earlier download found in huggingface_hub's cache without the network: the
    revision ``revision`` names (a branch ref or a commit), else the newest complete one (downloads
    pin the commit, so huggingface_hub records no branch ref for them)."""
    from huggingface_hub import snapshot_download, try_to_load_from_cache
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = hub_cache_dir()
    revisions = [rev for _, rev in _cached_revisions(repo_id)]
    named = [r for r in revisions if revision in r.refs or r.commit_hash == revision]
    for rev in named or revisions:
        if filename is not None:
            hit = try_to_load_from_cache(repo_id, filename, cache_dir=cache, revision=rev.commit_hash)
            if isinstance(hit, str):
                return Path(hit), (filename,)
            continue
        try:
            folder = Path(snapshot_download(repo_id, revision=rev.commit_hash, cache_dir=cache,
                                            local_files_only=True))
        except (LocalEntryNotFoundError, OSError, ValueError):
            continue
        files = _complete_files(folder)
        if files is not None:
            return folder, files
        ggufs = sorted(folder.glob("*.gguf"))  # a GGUF-only repo: its one file
        if len(ggufs) == 1:
            return ggufs[0], (ggufs[0].name,)
    return None


def downloaded_path(repo_id: str, revision: str | None = None) -> Path | None:
    """The path of a complete earlier download of ``repo_id``, or None."""
    earlier = _earlier(repo_id, revision, None)
    return earlier[0] if earlier else None


def download(repo_id: str, *, revision: str | None = None, filename: str | None = None,
             report: Report = ignore, cancel: CancelToken = NEVER,
             disk_free: DiskFree | None = None) -> DownloadResult:
    """Fetch the files conversion needs (see module docstring); the result names the folder (or GGUF file)."""
    from huggingface_hub import hf_hub_download
    from quantpress.core.hub import endpoint

    start = time.monotonic()
    if not _online():
        earlier = _earlier(repo_id, revision, filename)
        if earlier is None:
            raise _offline_error(repo_id)
        path, files = earlier
        folder = path if path.is_dir() else path.parent
        report(Progress("download", 1.0, f"{repo_id}: already downloaded (offline)"))
        return DownloadResult(repo_id, path, files, sum((folder / f).stat().st_size for f in files),
                              time.monotonic() - start)
    # Before planning: the plan may fetch the shard index.
    revisions_before = {rev.commit_hash for _, rev in _cached_revisions(repo_id)}
    partial_before = _partials(repo_id)
    try:
        plan = _plan(repo_id, revision, filename)
    except BaseException:
        _undo(repo_id, revisions_before, partial_before)
        raise
    report(Progress("download", 0.0, f"{repo_id}: {len(plan.files)} files, {mb(plan.total_bytes)} MB "
                    f"({mb(plan.missing_bytes)} MB to fetch)", 0, plan.total_bytes))
    meter = _ByteMeter(plan, report, cancel)
    hook: dict[str, Any] = {"tqdm_class": _bar_class(meter)} if _byte_hook_supported() else {}
    try:
        check_disk_space(plan, disk_free)
        for f in plan.files:
            meter.start(f)
            with hub_errors(repo_id, revision):
                hf_hub_download(repo_id, f.name, revision=plan.commit, cache_dir=plan.cache_dir,
                                endpoint=endpoint(), **hook)
            meter.finish(f)
    except BaseException as exc:
        _undo(repo_id, revisions_before, partial_before)
        if cancel.cancelled and not isinstance(exc, Cancelled):
            raise Cancelled() from None  # e.g. an error raised out of Xet's progress callback
        raise
    report(Progress("download", 1.0, f"{repo_id}: downloaded {mb(plan.total_bytes)} MB", plan.total_bytes,
                    plan.total_bytes))
    return DownloadResult(repo_id, plan.result_path, tuple(f.name for f in plan.files), plan.total_bytes,
                          time.monotonic() - start)


def download_model(repo_id: str, *, revision: str | None = None, filename: str | None = None,
                   report: Report = ignore, cancel: CancelToken = NEVER) -> Path:
    """Download ``repo_id`` for conversion; the local folder (or GGUF file) to open."""
    return download(repo_id, revision=revision, filename=filename, report=report, cancel=cancel).path


def login_token(token: str) -> None:
    """Validate ``token`` with the Hub and store it where huggingface_hub keeps it (never in our settings)."""
    from huggingface_hub import login
    from huggingface_hub.errors import HfHubHTTPError

    token = token.strip()
    if not token:
        raise InvalidInput("an empty token; copy a read token from https://huggingface.co/settings/tokens")
    if not _online():
        raise NetworkUnavailable("offline: the token cannot be checked with the Hub; connect and retry")
    try:
        login(token=token, add_to_git_credential=False)  # with a token: validate (whoami) and store
    except _transport_errors() as exc:
        raise NetworkUnavailable(f"the token could not be checked with the Hub ({type(exc).__name__})") from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            raise InvalidInput("the Hub refused this token; copy a valid read token from "
                               "https://huggingface.co/settings/tokens") from None
        raise NetworkUnavailable(f"the token could not be checked with the Hub ({exc})") from None
    except ValueError as exc:  # an organization token, or an invalid one
        raise InvalidInput(f"this token cannot log in: {exc}") from None


def download_and_open(repo_id: str, token: str | None = None, *, revision: str | None = None,
                      report: Report = ignore, cancel: CancelToken = NEVER) -> Any:
    """For the GUI's worker process: log in with ``token`` if given, download, describe the result."""
    from quantpress.core.inspect import open_model

    if token:
        login_token(token)
    return open_model(download_model(repo_id, revision=revision, report=report, cancel=cancel))
