"""Check an output path before any work: a long run must not fail at its end on a path it could
never have written."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from ..errors import ElmoError
from .atomic import TEMPORARY_SUFFIX, temporary_prefix


def check_output_file(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """`path` as a Path, if a command may write it; otherwise an `ElmoError` naming it.

    Refused: an existing file without `overwrite`; anything there that is not a regular file
    (a symlink, folder, FIFO or device: replacing it would lose what it is); a missing folder;
    a folder this process cannot create files in (tried for real: permissions, a read-only
    filesystem, /proc).
    """
    path = Path(path)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as error:
        raise ElmoError(f"{path}: cannot check the output path ({error.strerror})") from None
    if mode is not None:
        if not stat.S_ISREG(mode):
            kind = "a symlink" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode) else "not a regular file"
            raise ElmoError(f"{path}: is {kind}; refusing to replace it (name a regular file)")
        if not overwrite:
            raise ElmoError(f"{path}: output exists; pass --overwrite to replace it")
    check_output_folder(path.parent, for_file=path)
    return path


def check_output_folder(folder: str | os.PathLike[str], for_file: Path | None = None) -> Path:
    """`folder` as a Path if it exists and this process can create files in it; otherwise an
    `ElmoError` naming it (and the file meant to go there)."""
    folder = Path(folder)
    name = f"{for_file}: " if for_file is not None else ""
    if not folder.is_dir():
        raise ElmoError(f"{name}folder {folder} does not exist" if name else f"{folder}: folder does not exist")
    probe = for_file or folder / "output"
    try:
        handle, probe_name = tempfile.mkstemp(prefix=f"{temporary_prefix(probe)}{os.getpid()}-",
                                              suffix=TEMPORARY_SUFFIX, dir=folder)
    except OSError as error:
        raise ElmoError(f"{name}cannot write into folder {folder} ({error.strerror})") from None
    os.close(handle)
    os.unlink(probe_name)
    return folder
