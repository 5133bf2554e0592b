"""An unpacked model folder checked as a local build checks an ONNX with external data, plus one
rule of its own: the folder holds exactly the ONNX and the files it references.

Run by the service in a short-lived process (``python -m sparsekit.service.model_folder FOLDER
ONNX``, working folder ``FOLDER``), so that the API process never parses ONNX; it prints one JSON
line: ``{"ok": true, "digest", "bytes"}`` or ``{"ok": false, "message", "hint"}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sparsekit.backends.onnx_external import external_data_files
from sparsekit.backends.store import onnx_digest
from sparsekit.errors import ExternalDataError, SparsekitError
from sparsekit.onnx_io.load import load_onnx
from sparsekit.onnx_io.validate import load_validated_onnx


def regular_files(folder: Path) -> set[str]:
    """Every regular file under ``folder``, as a relative POSIX path."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}


def check_model_folder(folder: Path, onnx_name: str) -> dict:
    """Validate ``folder/onnx_name`` and its external data; return its content digest.

    Rules: every tensor stores the bytes it declares, in the ONNX or at its offset/length in a
    data file (:func:`~sparsekit.onnx_io.validate.load_validated_onnx`); every external-data
    location is a regular file inside the folder
    (:func:`~sparsekit.backends.onnx_external.external_data_files`); no file in the folder is
    left unreferenced.

    Returns:
        ``{"digest": the engine store's content digest (ONNX and data files), "bytes": total size}``.

    Raises:
        OnnxModelError / ExternalDataError: the first rule broken, named.
    """
    onnx_path = folder / onnx_name
    files = external_data_files(load_onnx(onnx_path, load_external_data=False), onnx_path)  # locations first: they name the missing file plainly
    referenced = {f.relative_to(folder).as_posix() for f in files}
    extra = sorted(regular_files(folder) - referenced - {onnx_name})
    if extra:
        shown = ", ".join(f"'{name}'" for name in extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        raise ExternalDataError(f"the archive holds {shown}, which '{onnx_name}' does not reference", "send only the .onnx and the external-data files it names")
    load_validated_onnx(onnx_path)  # every tensor stores the bytes it declares; ONNX's checker
    size = onnx_path.stat().st_size + sum((folder / name).stat().st_size for name in referenced)
    return {"digest": onnx_digest(onnx_path), "bytes": size}


def main(argv: list[str]) -> int:
    folder, onnx_name = Path(argv[0]), argv[1]
    try:
        out = {"ok": True, **check_model_folder(folder, onnx_name)}
    except SparsekitError as exc:
        out = {"ok": False, "message": exc.problem, "hint": exc.fix}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
