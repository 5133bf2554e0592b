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


class ExternalDataError(OnnxModelError):
    """An ONNX file's external-data location is unsafe (outside its folder, a device) or missing."""


class EngineBuildError(SparsekitError):
    """TensorRT or TensorRT-RTX refused to build an engine for this ONNX and target."""


class EngineLoadError(SparsekitError):
    """A built engine cannot be loaded on this machine (wrong GPU, runtime or driver)."""


class BuildSpecError(SparsekitError):
    """A build spec is not JSON, has an unknown field, or a value outside its allowed range."""


class ServiceConfigError(SparsekitError):
    """A build-service setting is outside its allowed range, or an unsafe combination."""


class ServiceStateError(SparsekitError):
    """The build service's state folder cannot be used (another server holds it, or it is unwritable)."""


class UnsafeCheckpointError(SparsekitError):
    """A checkpoint or training state holds something other than tensors and plain data (its pickle
    would import or call code); it is refused unread, never executed."""


class CheckRequirementError(SparsekitError):
    """A 2:4 check cannot prove anything as asked: a ``--require`` pattern matches no layer, or no
    layer is required at all."""


class UntrustedSourceError(ModelSourceError):
    """A file (checkpoint, training state, loop file, run folder, upload) names code to run (a
    factory or module) that the user did not name in this invocation; files are data, never code."""


class ResourceLimitError(SparsekitError):
    """A size a file or setting declares (layers, widths, parameters, steps, list lengths) is outside
    the kit's limits; refused before anything of that size is allocated."""


class DiskFullError(OutputPathError):
    """The disk filled while writing an output; what was started is removed."""
