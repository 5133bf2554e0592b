"""External data of an ONNX file, checked before anything reads or hashes it.

An ONNX file may keep its weights in other files: ``onnx.save_model(model, path,
save_as_external_data=True)`` writes them next to the ONNX and records each location relative
to the ONNX's folder. The kit accepts exactly that layout: every location must name a regular
file inside the ONNX's own folder (no absolute path, no ``..``, no link leading out, no device
or FIFO). The checks read only the ONNX protobuf and ``stat`` the locations; they never open a
data file, so a location such as ``/dev/zero`` is refused instead of being read forever.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sparsekit.onnx_io.tensors import graph_tensors, node_tensors
from sparsekit.errors import ExternalDataError
from sparsekit.onnx_io.load import load_onnx

_FIX = "keep external-data files next to the ONNX (as onnx.save_model(..., save_as_external_data=True) writes them) and reference them by a relative name"
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ExternalRef:
    """One tensor whose bytes live in another file.

    Attributes:
        tensor: the tensor name.
        location: the location as written in the ONNX (relative to the ONNX's folder).
        offset: first byte in the file (0 when absent).
        length: number of bytes (None: to the end of the file).
    """

    tensor: str
    location: str
    offset: int
    length: int | None


def external_refs(model) -> list[ExternalRef]:
    """Every tensor of ``model`` (a ``ModelProto`` loaded without external data) stored elsewhere:
    initializers, sparse initializers, attribute tensors, subgraphs and functions."""
    import onnx

    tensors = list(graph_tensors(model.graph))
    for function in model.functions:
        for node in function.node:
            tensors.extend(node_tensors(node))
    out = []
    for t in tensors:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        try:
            offset = int(info.get("offset", 0) or 0)
            length = int(info["length"]) if info.get("length") else None
        except ValueError:
            offset, length = -1, None
        out.append(ExternalRef(t.name, info.get("location", ""), offset, length))
    return out


def _why_unsafe(location: str, folder: Path) -> str | None:
    """Why ``location`` (relative to ``folder``) is not a plain file inside it; None if it is."""
    if not location or "\x00" in location:
        return "an empty or malformed location"
    parts = re.split(r"[\\/]", location)
    if PurePosixPath(location).is_absolute() or location.startswith("\\") or _DRIVE.match(location):
        return "an absolute path"
    if ".." in parts:
        return "a path that leaves the ONNX's folder ('..')"
    root = os.path.realpath(folder)
    real = os.path.realpath(os.path.join(root, location))
    if not real.startswith(root + os.sep):
        return "a link that leads out of the ONNX's folder"
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        return "a file that does not exist"
    except OSError as exc:
        return f"a file that cannot be read ({exc.strerror})"
    if not stat.S_ISREG(mode):
        return "not a regular file (a device, FIFO or folder)"
    return None


def external_data_files(model, onnx_path: str | os.PathLike) -> list[Path]:
    """Check every external-data location of ``model`` and return the files, sorted by location.

    Args:
        model: the ``ModelProto`` of ``onnx_path``, loaded with ``load_external_data=False``.
        onnx_path: the ONNX file; locations are relative to its folder.

    Returns:
        The data files (inside the ONNX's folder), one per distinct location; ``[]`` when the model
        is self-contained.

    Raises:
        ExternalDataError: a location is absolute, contains ``..``, leads out through a link, is
            missing or is not a regular file, or a tensor's offset/length lies past the file's end.
    """
    onnx_path = Path(onnx_path)
    folder = onnx_path.parent
    sizes: dict[str, int] = {}
    for ref in external_refs(model):
        if ref.location not in sizes:
            why = _why_unsafe(ref.location, folder)
            if why:
                raise ExternalDataError(f"'{onnx_path}' references external data '{ref.location}' (tensor '{ref.tensor}'): {why}", _FIX)
            sizes[ref.location] = (folder / ref.location).stat().st_size
        end = ref.offset + (ref.length or 0)
        if ref.offset < 0 or end > sizes[ref.location]:
            raise ExternalDataError(
                f"'{onnx_path}': tensor '{ref.tensor}' needs bytes {ref.offset}..{end} of '{ref.location}', which has {sizes[ref.location]}",
                "re-save the model; its external-data file is truncated or belongs to another export",
            )
    return [folder / loc for loc in sorted(sizes)]


def refuse_external_data(onnx_path) -> None:
    """Refuse an ONNX file that references external data at all (uploads to the build service).

    Only the ONNX protobuf is read; no location is resolved or opened.

    Args:
        onnx_path: the file, or its ``ModelProto`` loaded without external data.

    Raises:
        OnnxModelError: the file is missing or not ONNX.
        ExternalDataError: some tensor lives in another file.
    """
    model = onnx_path if hasattr(onnx_path, "graph") else load_onnx(onnx_path, load_external_data=False)
    refs = external_refs(model)
    if refs:
        locations = sorted({r.location for r in refs})
        shown = ", ".join(f"'{loc}'" for loc in locations[:3]) + (f" and {len(locations) - 3} more" if len(locations) > 3 else "")
        raise ExternalDataError(
            f"the ONNX references external data ({len(refs)} tensor(s) in {shown}); an upload must carry all its weights",
            "save the model with its weights inside (onnx.save_model(model, path), under 2 GiB), or build it locally with 'sparsekit build'",
        )
