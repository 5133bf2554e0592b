"""The ``sparsekit`` command: parses arguments, configures output, calls the library.

Errors the kit raises on purpose print as one line with the fix and exit non-zero; anything else
prints one line too, and the traceback only with ``--debug``. Output paths are checked before any
work starts. Ctrl-C, SIGTERM and SIGHUP unwind the command (temporary files removed, no output
half-written) and exit with 128 + the signal number after one line.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import warnings

from sparsekit.cli import cmd_analyze, cmd_bench, cmd_build, cmd_check, cmd_export, cmd_finetune, cmd_models, cmd_plan, cmd_prune, cmd_run, cmd_select, cmd_sensitivity, cmd_serve, cmd_sparsify
from sparsekit._hashing import kit_version
from sparsekit._io import forget_created_folders, remove_empty_created_folders
from sparsekit.cli.common import named_sources, refuse_unwritable_outputs
from sparsekit.cli.signals import Terminated, stop_signals_raise
from sparsekit.errors import SparsekitError
from sparsekit.models.trust import trust_sources

COMMANDS = (cmd_models, cmd_analyze, cmd_prune, cmd_sparsify, cmd_sensitivity, cmd_plan, cmd_finetune, cmd_check, cmd_export, cmd_build, cmd_bench, cmd_select, cmd_run, cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparsekit",
        description="Take a PyTorch model to 2:4 structured-sparse ONNX/TensorRT for Ampere+ GPUs, and prove each step: "
        "analyze -> sparsify (sensitivity, permutation) -> finetune (distillation, QAT) -> check -> export. 'sparsekit demo' runs the whole chain on a built-in model.",
        epilog="Run 'sparsekit COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)")
    parser.add_argument("--debug", action="store_true", help="log everything and show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS:
        cmd.add_parser(sub)
    return parser


def _version() -> str:
    return kit_version()


def _configure_logging(verbose: bool, debug: bool) -> None:
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    if not debug:  # ModelOpt configures its own loggers at INFO
        for name in ("modelopt", "modelopt.onnx", "modelopt.onnx.autocast"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # printed by every import of modelopt.torch next to a newer transformers; says nothing about the command
        warnings.filterwarnings("ignore", message=r"transformers .* is not tested with current version of modelopt")


def one_line(text: str) -> str:
    """``text`` with every non-printable character escaped (``\\n``, ``\\x1b``): an error that
    repeats a string from a file stays one line and cannot forge another or drive the terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


SIGNALS_HANDLED_BY_COMMAND = {"serve"}
"""Commands that stop on SIGTERM/SIGHUP by themselves (the service drains and shuts down)."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sparsekit`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose, args.debug)
    forget_created_folders()
    code = _run(args)
    if code:
        remove_empty_created_folders()  # a failed command leaves no empty output folder behind
    return code


def _run(args) -> int:
    """Run the parsed command; every failure becomes one line on stderr and its exit status."""

    signals = contextlib.nullcontext() if args.command in SIGNALS_HANDLED_BY_COMMAND else stop_signals_raise()
    try:
        with signals, trust_sources(*named_sources(args), remote_code=getattr(args, "trust_remote_code", None), max_params=getattr(args, "max_params", None)):
            refuse_unwritable_outputs(args)
            return int(args.func(args) or 0)
    except SparsekitError as exc:
        if args.debug:
            raise
        print(f"sparsekit: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("sparsekit: interrupted; unfinished outputs removed", file=sys.stderr)
        return 130
    except Terminated as exc:
        print(f"sparsekit: stopped by {exc}; unfinished outputs removed", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - last resort: one line, traceback with --debug
        if args.debug:
            raise
        first = one_line((str(exc).strip().splitlines() or [""])[0])
        print(f"sparsekit: internal error: {type(exc).__name__}: {first} (rerun with --debug for the traceback, and report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
