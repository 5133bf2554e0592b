"""Arguments and output helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console

from sparsekit.models.trust import DEFAULT_MAX_PARAMS
from sparsekit._io import ensure_writable_file, ensure_writable_folder, write_json_atomic
from sparsekit.cli.config_args import add_config_args, config_from_args
from sparsekit.data.config import DataConfig
from sparsekit.errors import SparsekitError

# Piped output is not cut to 80 columns: tables keep full layer names for logs and CI.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)


def add_model_args(p: argparse.ArgumentParser, what: str = "MODEL", nargs: str | None = None) -> None:
    p.add_argument("model", metavar=what, nargs=nargs, help="zoo name (see 'sparsekit models'), path/file.py:factory, pkg.module:factory, torchvision:NAME, hf:DIR (a Hugging Face save_pretrained folder), or a sparsekit checkpoint .pt")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE", help="argument for the zoo entry or factory (repeatable; values are read as int, float, true/false or text), e.g. --model-arg hidden=512; for hf:DIR, config overrides and architecture=CLASS, attn_implementation=eager|sdpa")
    add_input_args(p)
    add_trust_args(p)


def add_trust_args(p: argparse.ArgumentParser) -> None:
    """The trust options: which code a file may name, Hugging Face remote code, the size limit."""
    g = p.add_argument_group("trust", "files are data: code runs only where you name it on this command line")
    g.add_argument("--model-source", action="append", default=[], metavar="FILE.py:FACTORY", help="allow a checkpoint (or run folder) to rebuild its model with this factory, which you trust (repeatable; compared by resolved path and file content); a file naming any other code is refused")
    g.add_argument("--trust-remote-code", action="store_true", default=None, help="let a Hugging Face folder run its own Python (auto_map); off by default, and never asked on the terminal")
    g.add_argument("--max-params", type=_positive_int, metavar="N", help=f"largest model (parameters) a file's description may build, counted before anything is allocated (default {DEFAULT_MAX_PARAMS:,})")


def named_sources(args) -> list[str]:
    """The code the user named on this command line (MODEL, --model-source, --teacher, --task
    FILE.py:make_task, --preprocess FILE.py:FN)."""
    named = [getattr(args, "model", None), getattr(args, "teacher", None), *(getattr(args, "model_source", None) or []), getattr(args, "task", None), getattr(args, "preprocess", None)]
    return [s for s in named if isinstance(s, str)]


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def add_input_args(p: argparse.ArgumentParser) -> None:
    """The input options: shapes (with integer ranges), sequence length, dynamic axes."""
    p.add_argument("--input-shape", action="append", default=[], metavar="[NAME:]DxD[:DTYPE][:LOW..HIGH]", help="input shape, batch first (repeat per input; replaces the model's or checkpoint's own), with the value range [LOW, HIGH) of an integer input, e.g. 1x3x224x224 or input_ids:1x128:int64:0..30522")
    p.add_argument("--seq-len", type=_positive_int, metavar="N", help="size of the input axes labelled 'sequence' (Hugging Face text models: default 128)")
    p.add_argument("--dynamic-axis", action="append", default=[], metavar="NAME:AXIS[=LABEL]", help="make an input axis dynamic in the ONNX (repeatable), e.g. input_ids:1=sequence; axis 0 (batch) always is, Hugging Face text inputs also have 'sequence'")


def input_options(args) -> dict:
    """``load_model`` keyword arguments from the input options (absent options give defaults)."""
    return {"input_shapes": getattr(args, "input_shape", None) or None, "seq_len": getattr(args, "seq_len", None), "dynamic_axes": getattr(args, "dynamic_axis", None) or None}


def add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the full report as JSON on stdout instead of tables")
    p.add_argument("--report", metavar="FILE", help="also write the JSON report to FILE (atomically)")


def load_from_args(args):
    from sparsekit.models.source import load_model, parse_model_args

    return load_model(args.model, parse_model_args(args.model_arg), **input_options(args))


OUTPUT_FILE_OPTIONS = ("report",)
"""Options naming a file a command writes when its work is done (replaced if it exists)."""
OUTPUT_FOLDER_OPTIONS = ("out", "store", "triton", "download")
"""Options naming a folder a command writes into (created if needed)."""


def refuse_unwritable_outputs(args) -> None:
    """Refuse, before any work starts, output files and folders that cannot be written.

    Covers the options in :data:`OUTPUT_FILE_OPTIONS` and :data:`OUTPUT_FOLDER_OPTIONS` that the
    command has and that are set; commands check their ``--output`` themselves (with ``--force``).
    Nothing is created.

    Raises:
        OutputPathError: a path is under a file, a file where a folder is needed, or on a
            read-only or otherwise unwritable location.
    """
    if getattr(args, "show_recipe", False):  # prints and writes nothing
        return
    for name in OUTPUT_FILE_OPTIONS:
        if getattr(args, name, None):
            ensure_writable_file(getattr(args, name))
    for name in OUTPUT_FOLDER_OPTIONS:
        if getattr(args, name, None):
            ensure_writable_folder(getattr(args, name))


def emit(args, payload: dict) -> None:
    """Write the JSON report to --report and, with --json, to stdout."""
    if getattr(args, "report", None):
        write_json_atomic(args.report, payload)
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def status(message: str):
    """A spinner on stderr for long work (silent when stderr is not a terminal)."""
    return err.status(message, spinner="dots")


def yes_no(v: bool | None) -> str:
    if v is None:
        return "[dim]-[/]"
    return "[green]yes[/]" if v else "[red]no[/]"


DATA_CALIB_SKIP = ("label_column", "max_eval", "eval_batch", "family")
"""Data options that calibration (sparsify, export) does not read."""


def add_data_args(p: argparse.ArgumentParser, skip=()) -> None:
    """The data options (``--data`` and how to read it), generated from :class:`~sparsekit.data.config.DataConfig`."""
    add_config_args(p.add_argument_group("data", "your own data (a recipe's data: section takes the same names); code runs only where you name it (--preprocess)"), DataConfig, skip)


def data_config(args, skip=()):
    """The :class:`~sparsekit.data.config.DataConfig` of the data options."""
    return config_from_args(args, DataConfig, skip)


def add_task_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    """``--task`` (a registered task or your FILE.py:make_task), its ``--task-arg`` options, and the data options."""
    p.add_argument("--task", required=required, metavar="NAME|FILE.py:FN", help="task giving data and metric: 'digits' (zoo CNN on scikit-learn digits), 'docstrings' (MiniLM retrieval; needs the 'minilm' extra), or your FILE.py:make_task returning a sparsekit Task (run because you name it here); default with --data: your data, distilled from the dense model")
    add_task_option_arg(p)
    add_data_args(p)


def add_task_option_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task-arg", action="append", default=[], metavar="KEY=VALUE", help="task option (repeatable), e.g. docstrings: eval_split=eval|eval_large|heldout|ood, corpus=stdlib|broad; digits: image_size=32")


def task_options(args) -> dict:
    """``get_task`` / ``make_task`` keyword arguments from --data and --task-arg."""
    from sparsekit.models.source import parse_model_args

    return {**({"data": args.source} if getattr(args, "source", None) else {}), **parse_model_args(getattr(args, "task_arg", []) or [])}


def load_task(args, loaded=None):
    """The task of the options: a registered ``--task``, the user's ``--task FILE.py:FN``, or (no
    ``--task``, a ``--data``) the data task for ``loaded``; None when neither is given."""
    from sparsekit.tasks import get_task, user_task

    if args.task:
        return user_task(args.task, **task_options(args)) if is_task_code(args.task) else get_task(args.task, **task_options(args))
    if getattr(args, "source", None):
        from sparsekit.tasks.data_task import DataTask

        if loaded is None:
            raise SparsekitError("your data (--data) needs a MODEL to feed", "name the model, e.g. 'hf:DIR' or 'file.py:factory'")
        return DataTask(loaded, data_config(args))
    return None


def is_task_code(spec: str | None) -> bool:
    """Whether ``--task`` names code (``FILE.py:FN`` or ``pkg.module:FN``) rather than a registered task."""
    return isinstance(spec, str) and ":" in spec


def load_task_and_model(args):
    """The task (``--task``, or ``--data`` for your data) and the model (the task's default model when MODEL is omitted)."""
    from sparsekit.models.source import load_model, parse_model_args

    if not args.task and not getattr(args, "source", None):
        raise SparsekitError("no data to work on", "give --data FILE (your data) or --task NAME ('digits', 'docstrings', or FILE.py:make_task)")
    if args.model:
        loaded = load_model(args.model, parse_model_args(args.model_arg), **input_options(args))
        task = load_task(args, loaded)
    else:
        task = load_task(args)
        loaded = load_model(task.model[0], {**task.model[1], **parse_model_args(args.model_arg)}, **input_options(args))
    task.check_fits(loaded.model)
    return task, loaded


def calibration_from_data(args, config, loaded, needed: bool):
    """``config`` (a stage's calibration settings) calibrating on the ``--data`` source's training
    items when ``--data`` is given and the stage needs calibration; else ``config`` unchanged."""
    if not needed or not getattr(args, "source", None):
        return config
    from sparsekit.data.calib import data_calibration

    return config.with_batches(data_calibration(loaded, data_config(args, DATA_CALIB_SKIP), config.calib_samples))


def progress_bar(label: str):
    """A rich progress bar on stderr (a no-op display when stderr is not a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False, disable=not err.is_terminal)
