"""A hidden folder in which an export is written and verified before it replaces its target.

An ONNX with external data is two files (``model.onnx`` and ``model.onnx.data``) whose
relative location must already hold when the file is verified. The export therefore writes both
into ``.<target name>.<pid>.<random>.stage/`` next to the target (same file system, so renames
are atomic), checks them there, and only then renames the data file and the ONNX onto their
targets (data first, so a published ONNX never points at missing data). A failure removes the
folder; a folder left by a run that was killed outright is removed by the next export to the
same target.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from sparsekit._io import _umask, disk_full_error, remove_stale_temps
from sparsekit.errors import OutputPathError
from sparsekit.export.external_data import data_file_name


def _stage_pattern(target: Path) -> re.Pattern:
    return re.compile(rf"\.{re.escape(target.name)}\.(\d+)\.[A-Za-z0-9_]{{8}}\.stage")


def remove_stale_stages(target: str | os.PathLike) -> list[Path]:
    """Remove stage folders of ``target`` whose process is gone (killed while exporting).

    Returns:
        The removed folders.
    """
    return remove_stale_temps(target, _stage_pattern(Path(target)), folders=True)


def data_target(target: str | os.PathLike) -> Path:
    """The external-data file that belongs to ONNX ``target`` (``<target>.data``)."""
    target = Path(target)
    return target.with_name(data_file_name(target.name))


def _publish(onnx_file: Path, target: Path) -> None:
    """Rename the staged data file (if any), then the staged ONNX, onto their targets; a
    ``<target>.data`` of an earlier export is removed when the new ONNX is self-contained."""
    mode = 0o666 & ~_umask()
    data = data_target(onnx_file)
    if data.exists():
        os.chmod(data, mode)
        os.replace(data, data_target(target))
        os.chmod(onnx_file, mode)
        os.replace(onnx_file, target)
    else:
        os.chmod(onnx_file, mode)
        os.replace(onnx_file, target)
        data_target(target).unlink(missing_ok=True)


@contextlib.contextmanager
def staged_onnx(target: str | os.PathLike) -> Iterator[Path]:
    """Yield ``<stage>/<target name>``; on success publish it (and ``<name>.data``) onto ``target``.

    Side effects: on success, ``target`` (and ``<target>.data`` when the export wrote one) are
    replaced; a ``<target>.data`` left from an earlier export with external data is removed when
    the new file is self-contained. On any exception nothing at the target changes.

    Raises:
        DiskFullError: the stage folder cannot be created for lack of room.
        OutputPathError: the stage folder cannot be created next to ``target``.
    """
    target = Path(target)
    remove_stale_stages(target)
    try:
        try:
            stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".stage", dir=target.parent))
        except OSError as exc:
            raise disk_full_error(exc, target) or OutputPathError(f"cannot write next to '{target}': {exc.strerror}", "choose a writable output location with free space") from exc
        onnx_file = stage / target.name
        yield onnx_file
        _publish(onnx_file, target)
    finally:  # by name: a signal that lands just after mkdtemp made the folder leaves no name to remove
        for own in target.parent.glob(f".{target.name}.{os.getpid()}.*.stage"):
            shutil.rmtree(own, ignore_errors=True)
