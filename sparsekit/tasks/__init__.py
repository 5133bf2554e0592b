"""Tasks the kit knows end to end: a model, its training/calibration/evaluation data and metric.

``sparsekit finetune --task NAME`` and ``sparsekit sensitivity --task NAME`` use them; the
accuracy benchmark is built on them. Register new ones with :func:`register_task`.
"""

from sparsekit.tasks.base import TASKS, EvalResult, Task, get_task, register_task
from sparsekit.tasks import digits, docstrings  # noqa: E402,F401 - register the built-in tasks, at the package edge

__all__ = ["TASKS", "EvalResult", "Task", "get_task", "register_task"]
