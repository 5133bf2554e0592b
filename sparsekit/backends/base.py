"""The backend interface: build an artifact from ONNX + a build spec, load it, run it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from sparsekit.backends.spec import BuildSpec
from sparsekit.backends.trt_report import SparseKernelReport


@dataclass
class BuildOutput:
    """What a backend's build produced inside the build folder.

    Attributes:
        artifact: the engine/model file.
        report: per-layer sparse-kernel report.
        log: the build log lines worth keeping.
        environment: versions and device facts the artifact is tied to.
        data_files: files the artifact needs next to it (an ONNX artifact's external data).
    """

    artifact: Path
    report: SparseKernelReport
    log: list[str] = field(default_factory=list)
    environment: dict = field(default_factory=dict)
    data_files: list[Path] = field(default_factory=list)


class Runner(Protocol):
    """A loaded artifact that runs inference."""

    input_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run once; ``feeds`` maps input names to arrays (batch first); returns outputs in order."""

    def close(self) -> None:
        """Free the session / engine."""


class Backend(Protocol):
    """A build/run backend, registered by name in :mod:`sparsekit.backends.registry`."""

    name: str
    artifact_name: str

    def environment(self) -> dict:
        """Versions and target-device facts; raises MissingDependencyError when unusable here."""

    def validate(self, onnx_path: Path, spec: BuildSpec, model=None) -> None:
        """Refuse, with the reason, builds this backend or this machine cannot do.

        ``model`` is the ONNX at ``onnx_path`` already loaded without its external data (None loads it)."""

    def build(self, onnx_path: Path, spec: BuildSpec, out_dir: Path, model=None) -> BuildOutput:
        """Build ``out_dir / artifact_name`` and its report (``out_dir`` is a private temp folder);
        ``model`` as in :meth:`validate`."""

    def load(self, artifact: Path) -> Runner:
        """Load a built artifact for inference."""
