"""An HDF5 output file written atomically, that fails cleanly when the disk fills up.

HDF5 cannot recover from a failed write: h5py then prints a traceback per object it releases
and the process may end in a segfault (seen with `elmo embed` on a full disk: 278 tracebacks,
exit 139). So HDF5 writes through `atomic.atomic_file`'s Python file object, which remembers the
first failed write and accepts the rest: the writer calls `check()` after each piece of data
(raising the remembered error), HDF5 closes without noticing, the temporary is deleted and the
error becomes one line naming the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import h5py

from .atomic import atomic_file


class Hdf5Output(NamedTuple):
    """The open output: `file` (an `h5py.File` in write mode) and `check()`."""

    file: h5py.File
    check: Callable[[], None]
    """Raise the first failed write so far (an OSError), if any."""


@contextmanager
def atomic_hdf5(path: str | Path) -> Iterator[Hdf5Output]:
    """Write an HDF5 file at `path` atomically; a full disk raises one `ElmoError` naming `path`.

    Example:
        with atomic_hdf5("out.hdf5") as output:
            for name, array in items:
                output.file.create_dataset(name, data=array)
                output.check()  # stop at the first failed write
    """
    with atomic_file(path) as guarded, h5py.File(guarded, "w") as h5:
        yield Hdf5Output(h5, guarded.check)
