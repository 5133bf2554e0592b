"""Tasks the kit knows end to end: a model, its training/calibration/evaluation data and metric.

``sparsekit finetune --task NAME`` and ``sparsekit sensitivity --task NAME`` use them; the
accuracy benchmark is built on them. Register new ones with :func:`register_task`.

Your own data goes through :mod:`sparsekit.tasks.data_task` (``--data``), your own task through
:func:`user_task` (``--task FILE.py:make_task``).
"""

from sparsekit.tasks.base import TASKS, EvalResult, Task, get_task, register_task
from sparsekit.tasks.user import user_task
from sparsekit.tasks import digits, docstrings  # noqa: E402,F401 - register the built-in tasks, at the package edge

__all__ = ["TASKS", "EvalResult", "Task", "get_task", "register_task", "user_task"]
