"""Your own task: ``--task FILE.py:make_task`` (or ``pkg.module:make_task``) returning a
:class:`~sparsekit.tasks.base.Task`, run only because you name it on this command line (or in a
recipe you run): a file never names a task that runs."""

from __future__ import annotations

from sparsekit.errors import SparsekitError, TrainingDataError
from sparsekit.tasks.base import Task
from sparsekit.models.build import load_callable
from sparsekit.models.trust import require_allowed


def user_task(spec: str, **options) -> Task:
    """The task ``spec``'s function returns, called with ``options`` (``--data`` as ``data=``, ``--task-arg``).

    Raises:
        UntrustedSourceError: ``spec`` was not named in this invocation.
        ModelSourceError: the file or function cannot be loaded.
        TrainingDataError: the function raised, or returned something other than a Task.
    """
    require_allowed(spec, "--task")
    make = load_callable(spec)
    try:
        task = make(**options)
    except SparsekitError:
        raise
    except Exception as exc:  # user code: report what it raised
        raise TrainingDataError(f"task '{spec}' raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", "fix the task function (it is called with the --task-arg options and data=--data)") from exc
    if not isinstance(task, Task):
        raise TrainingDataError(f"task '{spec}' returned {type(task).__name__}, not a sparsekit Task", "return an instance of a sparsekit.tasks.Task subclass (train_batches, calibration, evaluate)")
    if not task.name:
        task.name = spec.rpartition(":")[2]
    return task
