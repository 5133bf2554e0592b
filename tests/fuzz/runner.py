"""Run every fuzz target in this one process, under an address-space limit, and write a JSON report.

Usage: ``python -m tests.fuzz.runner ROOT REPORT.json [TARGET...]`` (launched by
:mod:`tests.fuzz.test_fuzz`). ``ROOT`` is an empty folder: the seeds, the payload module, the
sentinel and every case live there, and it is the working directory (the caller points ``TMPDIR``
and the caches inside it too, so a stray file anywhere the kit might write is seen).

The report: ``{"rlimit_as": bytes, "peak_rss_mb": float, "setup_seconds": float,
"targets": {name: {"ok", "examples", "seconds", "error"}}}``. A failing target's ``error`` holds the
assertion and the falsifying example(s).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path

RLIMIT_AS = 6 << 30
"""Address space of this process (6 GiB): torch, ONNX Runtime and transformers start under it
(measured: they start under 4 GiB), and a file that makes the kit allocate gigabytes ends in a
MemoryError, which the harness reports as an internal error, instead of swapping the machine."""


def _describe(exc: BaseException) -> str:
    """The failure(s) and their falsifying examples, a few lines each."""
    parts = []
    for sub in getattr(exc, "exceptions", None) or [exc]:
        text = "".join(traceback.format_exception_only(type(sub), sub)).strip()
        notes = "\n".join(getattr(sub, "__notes__", []) or [])
        parts.append(f"{text[:12000]}\n{notes[:2500]}")
    return "\n---\n".join(parts)


def main(argv: list[str]) -> int:
    root, report_path, *names = argv
    resource.setrlimit(resource.RLIMIT_AS, (RLIMIT_AS, RLIMIT_AS))
    start = time.perf_counter()
    import torch

    torch.set_num_threads(1)
    import onnxruntime  # noqa: F401 - imported before any case, so no case pays for (or is blamed for) it
    import transformers  # noqa: F401

    from tests.conftest import sparsekit_inprocess
    from tests.fuzz.harness import Arena, install_audit_hook
    from tests.fuzz.seeds import make_seeds
    from tests.fuzz.targets import TARGETS, Findings

    root_path = Path(root).resolve()
    seeds = make_seeds(root_path / "seeds")
    arena = Arena(root_path)
    sys.path.append(str(root_path))  # the payload module is importable by name: nothing may import it
    os.chdir(root_path)
    scale = float(os.environ.get("SPARSEKIT_FUZZ_SCALE", "1"))
    install_audit_hook()
    report = {"rlimit_as": resource.getrlimit(resource.RLIMIT_AS)[0], "setup_seconds": round(time.perf_counter() - start, 1), "targets": {}}
    for name in names or list(TARGETS):
        build, examples = TARGETS[name]
        before = arena.count
        t0 = time.perf_counter()
        findings = Findings()
        test = build(arena, seeds, sparsekit_inprocess, max(1, int(examples * scale)), findings)
        try:
            test()
            findings.raise_if_any()
            result = {"ok": True, "error": ""}
        except BaseException as exc:  # every failure goes into the report
            if isinstance(exc, KeyboardInterrupt):
                raise
            result = {"ok": False, "error": _describe(exc)}
        result.update(examples=arena.count - before, seconds=round(time.perf_counter() - t0, 1), slowest_case=findings.slowest, outcomes=findings.outcomes)
        report["targets"][name] = result
        print(f"{name}: {'ok' if result['ok'] else 'FAILED'} ({result['examples']} cases, {result['seconds']} s)", file=sys.stderr, flush=True)
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    Path(report_path).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
