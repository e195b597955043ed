"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A reader (or an interrupted writer) sees either the old file, the complete new one, or none.
The temporary is `.NAME.PID-XXXXXXXX.tmp` beside NAME (PID: the writing process). A run that is
killed cannot remove its own; the next write of the same NAME removes those whose process is
gone. A full disk (or quota) becomes one `ElmoError` naming the file, after the temporary is
removed and with the target left as it was.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import ElmoError

FULL_DISK_ERRORS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                    errno.EFBIG: "file too large for this filesystem"}
"""The write errors that mean "the output does not fit", with the words the message uses."""

TEMPORARY_SUFFIX = ".tmp"


def temporary_prefix(path: Path) -> str:
    """The start of every temporary name for `path`: `.NAME.`."""
    return f".{path.name}."


def _process_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporaries of `path` left by processes that no longer run; returns them."""
    removed = []
    prefix = temporary_prefix(path)
    try:
        names = [name for name in os.listdir(path.parent) if name.startswith(prefix) and name.endswith(TEMPORARY_SUFFIX)]
    except OSError:
        return removed
    for candidate in (path.parent / name for name in names):
        pid_text = candidate.name[len(prefix):].partition("-")[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and _process_is_gone(int(pid_text)):
            try:
                candidate.unlink()
                removed.append(candidate)
            except OSError:
                pass
    return removed


def full_disk_error(error: BaseException, path: str | os.PathLike[str]) -> ElmoError | None:
    """An `ElmoError` naming `path` for a full-disk `error` writing it (None for other errors).

    Libraries that write in native code report it in their own words (safetensors: "I/O error: No
    space left on device (os error 28)"; pyarrow an OSError without errno): their message is read too."""
    number = error.errno if isinstance(error, OSError) and error.errno in FULL_DISK_ERRORS else next(
        (n for n in FULL_DISK_ERRORS if f"os error {n})" in str(error) or os.strerror(n) in str(error)), None)
    if number not in FULL_DISK_ERRORS:
        return None
    return ElmoError(f"{path}: {FULL_DISK_ERRORS[number]} (not written; an earlier {Path(path).name} is unchanged)")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it to `path`, on error delete it.

    Raises:
        ElmoError: the disk (or quota) filled up: the message names the file; the temporary is
            gone and `path` is as it was.

    Example:
        with atomic_path("out.hdf5") as temporary:
            write_everything(temporary)
    """
    path = Path(path)
    remove_stale_temporaries(path)
    temporary: Path | None = None
    try:
        handle, name = tempfile.mkstemp(prefix=f"{temporary_prefix(path)}{os.getpid()}-", suffix=TEMPORARY_SUFFIX,
                                        dir=path.parent)
        os.close(handle)
        temporary = Path(name)
        yield temporary
        # mkstemp creates the file owner-only (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except Exception as error:
        converted = full_disk_error(error, path)
        if converted is None:
            raise
        raise converted from error
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)


class GuardedFile:
    """A binary file whose first failed write is kept (`error`, raised by `check`) and later writes skipped.

    For writers that cannot recover from a failed write (HDF5) or report it as something else
    (torch.save: a RuntimeError about positions).
    """

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.error: OSError | None = None

    def _guard(self, write, *args):
        if self.error is None:
            try:
                return write(*args)
            except OSError as error:
                self.error = error
        return None

    def check(self) -> None:
        """Raise the first failed write (an OSError), if any."""
        if self.error is not None:
            raise self.error

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self._guard(self._write_all, view)
        return len(view)

    def _write_all(self, view: memoryview) -> None:
        written = 0
        while written < len(view):  # an unbuffered write may take part of the data (a nearly full disk)
            written += self.raw.write(view[written:])

    def truncate(self, size: int | None = None) -> int:
        self._guard(self.raw.truncate, size)
        return size if size is not None else self.raw.tell()

    def flush(self) -> None:
        self._guard(self.raw.flush)

    def read(self, size: int = -1) -> bytes:
        return self.raw.read(size)

    def readinto(self, buffer) -> int:
        return self.raw.readinto(buffer)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()


@contextmanager
def atomic_file(path: str | Path) -> Iterator[GuardedFile]:
    """`atomic_path` opened as a `GuardedFile` (binary, read-write): a failed write raises at the end,
    or in place of whatever error the writer raised because of it."""
    with atomic_path(path) as temporary, open(temporary, "w+b", buffering=0) as raw:
        guarded = GuardedFile(raw)
        try:
            yield guarded
        except Exception:
            guarded.check()
            raise
        guarded.check()
