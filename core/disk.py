"""Free-space checks made before a job writes anything, with one wording for every job.

``require_free_space(folder, n_bytes, what=..., advice=...)`` raises NotEnoughDiskSpace when the
filesystem holding ``folder`` (or its nearest existing parent, for folders a job will create) has
less than ``n_bytes`` plus a margin free. ``disk_free`` lets tests simulate a full disk.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from quantpress.core.errors import NotEnoughDiskSpace

DiskFree = Callable[[Path], int]

# Room for what a job writes besides its payload: headers, lock and partial files, filesystem slack.
MARGIN_BYTES = 64 << 20


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def existing_parent(path: Path) -> Path:
    """``path`` itself if it exists, else its nearest existing ancestor (where the space will come from)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def available_bytes(folder: Path) -> int | None:
    """Free bytes where ``folder`` is (or will be created), None when that cannot be told."""
    try:
        return free_bytes(existing_parent(folder))
    except OSError:
        return None


def mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.0f} MiB"


def require_free_space(folder: Path, n_bytes: int, *, what: str, advice: str,
                       disk_free: DiskFree | None = None, margin: int = MARGIN_BYTES) -> None:
    """Raise NotEnoughDiskSpace naming ``what`` needs the space, how much is free where, and ``advice``."""
    where = existing_parent(folder)
    have = (disk_free or free_bytes)(where)
    if have < n_bytes + margin:
        raise NotEnoughDiskSpace(
            f"{where}: {what} needs {mib(n_bytes)} but only {mib(have)} are free. {advice}")
