"""Reading and writing HDF5 model files safely.

Files are read as data only (h5py, never pickle). Writes go to a temp file in the
same folder that is renamed over the target when complete, so an interrupted save
leaves any earlier file intact. Anything that is not a readable HDF5 file of a
known layout gets a message that says what is wrong.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py

from core.errors import SparseLabError

FORMAT_ATTR = "sparselab_format"
METADATA_ATTR = "metadata"
SETTINGS_ATTR = "sparselab_settings"
RESERVED_ATTRS = (FORMAT_ATTR, METADATA_ATTR, SETTINGS_ATTR, "version")


@contextmanager
def atomic_h5_writer(path: Path, attrs: dict | None = None) -> Iterator[h5py.File]:
    """An HDF5 file to fill that appears at ``path`` only once complete, with ``attrs`` set."""
    path = Path(path)
    if not path.parent.is_dir():
        raise SparseLabError(f"Cannot save to '{path}': the folder '{path.parent}' does not exist.")
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    try:
        with h5py.File(temp, "w") as h5:
            h5.attrs.update(attrs or {})
            yield h5
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


@contextmanager
def open_h5(path: Path) -> Iterator[h5py.File]:
    path = Path(path)
    if not path.is_file():
        raise SparseLabError(f"No such file: '{path}'.")
    if not h5py.is_hdf5(path):
        raise SparseLabError(f"'{path.name}' is not an HDF5 file (wrong file, or its header is damaged).")
    try:
        h5 = h5py.File(path, "r")
    except (OSError, RuntimeError, ValueError) as exc:
        raise SparseLabError(f"'{path.name}' cannot be opened as HDF5: it is truncated or corrupt ({exc}).") from exc
    try:
        yield h5
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError,
            OverflowError) as exc:
        # The readers check each dataset and attribute with a specific message; this is the net under them
        # (HDF5 itself failing on damaged metadata), worded for the user rather than as a Python exception.
        raise SparseLabError(f"'{path.name}' is damaged or not laid out as a SparseLab/PruneBERT model file "
                             f"({exc or 'unreadable structure'}).") from exc
    finally:
        try:
            h5.close()
        except (OSError, RuntimeError):
            pass
