"""What the API may show: jobs, errors and logs without the server's absolute paths.

Paths inside the state folder become relative to it (``uploads/<sha256>.onnx``); any other
absolute path (Python's install, a temp folder, a traceback's source file) is cut to its last
component (``.../decoder.py``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sparsekit.service.jobs import Job

# An absolute path: starts a word (not inside a URL or a relative path), two or more components.
_ABSOLUTE = re.compile(r"""(?<![^\s'"(\[=,:])/(?:[^\s'"/:;,()\[\]<>]+/)+([^\s'"/:;,()\[\]<>]*)""")
_PRIVATE_RESULT_KEYS = ("folder",)


class PathScrubber:
    """Removes the server's absolute paths from text shown to clients.

    Args:
        state_dir: the service's state folder; paths inside it are shown relative to it.
    """

    def __init__(self, state_dir: Path) -> None:
        roots = {str(state_dir.absolute()), str(state_dir.resolve())}
        self._state_roots = sorted(roots, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for root in self._state_roots:
            text = text.replace(root + os.sep, "").replace(root, ".")
        return _ABSOLUTE.sub(lambda m: ".../" + m.group(1), text)

    def value(self, value):
        """``value`` with every string in it scrubbed (dicts and lists walked)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value


def public_job(job: Job, scrub: PathScrubber) -> dict:
    """A job as clients see it: no upload path, worker pid or result folder; paths scrubbed."""
    d = job.to_dict()
    if d.get("result"):
        d["result"] = {k: v for k, v in d["result"].items() if k not in _PRIVATE_RESULT_KEYS}
    return scrub.value(d)
