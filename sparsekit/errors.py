"""Typed errors. Every error names the problem and how to fix it.

The CLI prints ``str(error)`` as one line and exits non-zero; library users catch
:class:`SparsekitError` (or a subclass) and read ``.problem`` and ``.fix``.
"""

from __future__ import annotations


class SparsekitError(Exception):
    """Base class of every error the kit raises on purpose.

    Args:
        problem: what is wrong, in one sentence.
        fix: what the user should do about it, in one sentence.
    """

    exit_code = 2

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} (fix: {fix})" if fix else problem)


class ModelSourceError(SparsekitError):
    """A model name, factory or checkpoint cannot be turned into a model."""


class InputShapeError(SparsekitError):
    """An input shape is missing, malformed, or does not fit the model."""


class CalibrationDataError(SparsekitError):
    """Calibration data is missing, unreadable, or of the wrong shape/dtype."""


class NoEligibleLayersError(SparsekitError):
    """The model has no layer that 2:4 sparsity can apply to."""


class OnnxModelError(SparsekitError):
    """An ONNX file is missing, corrupt, or not what the kit expects."""


class OutputExistsError(SparsekitError):
    """An output path exists and overwriting was not asked for."""


class OutputPathError(SparsekitError):
    """An output path cannot be written."""


class ExportError(SparsekitError):
    """ONNX export failed, or its result failed verification."""


class CheckFailedError(SparsekitError):
    """A layer required to be 2:4 sparse is not (exit code 3)."""

    exit_code = 3


class RecipeError(SparsekitError):
    """A recipe file is missing, malformed, or has settings the schema forbids."""


class MissingDependencyError(SparsekitError):
    """An optional dependency needed for this operation is not installed."""


class TrainingDataError(SparsekitError):
    """Training data is empty, or of the wrong shape or dtype for the model."""


class TrainingDivergedError(SparsekitError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingStateError(SparsekitError):
    """A saved training state does not belong to this model or run."""
