"""Checks on where a job will write, made before it starts (and before any folder is created).

    check_output_file(Path("out/m-Q4_K_M.gguf"), sources=[Path("m.gguf")])   convert's outputs, --save-plan
    check_output_folder(Path("out/m-awq"), sources=[Path("m")])               awq and unpack outputs
    make_folder(Path("out"))                                                  after validation only

Each raises InvalidInput naming the path: an output that is (or resolves to) the source, a file where
a folder is needed or the other way round, a path below an existing file, a place that cannot be
written (read-only filesystem, no permission). Folders are created only once every input is
validated, so a refused job leaves no empty folder behind.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from quantpress.core.errors import InvalidInput
from quantpress.core.model import ModelInfo


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def existing_ancestor(path: Path) -> Path:
    """The nearest folder above ``path`` (or ``path`` itself) that exists; InvalidInput when that is a file."""
    here = Path(os.path.abspath(path))
    while not here.exists():
        here = here.parent
    if not here.is_dir():
        raise InvalidInput(f"{path}: '{here}' is a file, not a folder; choose an output inside a folder")
    return here


def check_writable(path: Path) -> None:
    """InvalidInput when files cannot be created where ``path`` (a file or folder to be made) would go."""
    parent = existing_ancestor(path.parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        try:
            read_only = os.statvfs(parent).f_flag & os.ST_RDONLY
        except OSError:
            read_only = False
        why = "is on a read-only filesystem" if read_only else "is not writable (permission denied)"
        raise InvalidInput(f"{path}: cannot write there: '{parent}' {why}. Choose another output location")


def check_output_file(path: Path, sources: Iterable[Path] = (), *, what: str = "output") -> None:
    """A file ``path`` may be written (and replace an older one): not a source, not a folder, writable."""
    for source in sources:
        if _same(path, source):
            raise InvalidInput(f"{path}: the {what} would replace the model it is made from; choose another --out")
    if path.is_dir():
        raise InvalidInput(f"{path}: is a folder; the {what} is a file. Choose a file name or another folder")
    check_writable(path)


def check_output_folder(path: Path, sources: Iterable[Path] = (), *, what: str = "output") -> None:
    """A folder ``path`` may be created (or replaced, as the job decides): not a source, not inside or
    around one, not an existing file, writable."""
    for source in sources:
        if _same(path, source):
            raise InvalidInput(f"{path}: the {what} folder is the model it is made from; choose another --out")
        src = Path(os.path.abspath(source))
        if Path(os.path.abspath(path)) in src.parents:
            raise InvalidInput(f"{path}: the {what} folder would hold the model it is made from ({source}); "
                               "choose another --out")
    if path.exists() and not path.is_dir():
        raise InvalidInput(f"{path}: is a file; the {what} is a folder. Choose another --out")
    check_writable(path)


def make_folder(path: Path) -> list[Path]:
    """``mkdir -p`` with its failures as InvalidInput (call only after every input is validated);
    returns the folders it created, outermost first."""
    created = []
    here = Path(os.path.abspath(path))
    while not here.exists():
        created.append(here)
        here = here.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = "a read-only filesystem" if exc.errno == errno.EROFS else (exc.strerror or str(exc))
        raise InvalidInput(f"{path}: cannot create the output folder ({why}); choose another location") from None
    return created[::-1]


@contextmanager
def output_folder(path: Path) -> Iterator[None]:
    """``make_folder(path)`` for the duration of a job: when the job fails or is cancelled, the
    folders made here are removed again (those still empty), so a failed job leaves no folder behind."""
    created = make_folder(path)
    try:
        yield
    except BaseException:
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def default_output_dir(model: ModelInfo) -> Path | None:
    """Where converted files go unless the user says otherwise (CLI and GUI alike): a ``<name>-gguf``
    folder beside the model source, named after the repo for a Hub download, whose outputs go to
    quantpress's models folder (never into huggingface_hub's cache). None for a model without local files."""
    if model.local_path is None:
        return None
    from quantpress.core.hub_download import output_parent, repo_of_snapshot

    local = Path(model.local_path)
    repo = repo_of_snapshot(local)  # a Hub download: a folder in huggingface_hub's cache named by commit
    name = repo.split("/")[-1] if repo else (local.stem if local.is_file() else local.name)
    return output_parent(local) / f"{name}-gguf"
