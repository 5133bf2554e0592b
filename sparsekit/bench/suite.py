"""Run benchmark jobs in priority order within a time budget, keeping everything measured.

Made for machines lent for minutes: jobs run most-important first; each job is a sequence of
units (one batch size, one GEMM shape); before a unit starts, the suite checks that the time left
covers the unit's estimate (the job's last unit, by default) and records it as skipped otherwise.
A unit or job that fails is recorded with its error and the suite goes on. The result document is
rewritten atomically after every unit, so a run killed by a time limit still returns all that it
measured. SIGTERM ends the unit in progress as ``interrupted`` and stops the suite cleanly.

The suite writes exactly two files into its folder: ``<name>.json`` and ``<name>.log``.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from sparsekit._io import write_json_atomic


class SuiteInterrupted(BaseException):
    """SIGTERM (or SIGINT) arrived: stop after recording the unit in progress."""


class UnitTimeout(Exception):
    """A unit ran past its time limit; its job is abandoned (the next job still runs)."""


class JobSkipped(Exception):
    """Raised by a job that cannot run on this machine (e.g. TensorRT missing); recorded as skipped."""


def _error_record(exc: BaseException) -> dict:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return {"type": type(exc).__name__, "message": str(exc)[:2000], "traceback": "".join(tb)[-4000:]}


class Job:
    """One job's record and its units; handed to the job function.

    Attributes:
        record: the job's entry in the document (``name``, ``status``, ``units``, ``result``...).
    """

    def __init__(self, suite: "Suite", name: str) -> None:
        self.suite = suite
        self.record: dict[str, Any] = {"name": name, "status": "running", "units": [], "started_s": round(suite.elapsed(), 2)}
        suite.doc["jobs"].append(self.record)
        self._last_unit_s = 0.0

    def skip(self, label: str, reason: str) -> None:
        """Record a unit that cannot run on this machine (e.g. ``no GPU: ...``) as skipped, with its reason."""
        self.record["units"].append({"label": label, "status": "skipped", "reason": reason})
        self.suite.say(f"  {label}: skipped ({reason})")
        self.suite.write()

    def unit(self, label: str, fn: Callable[[], Any], estimate_s: float | None = None, limit_s: float | None = None) -> Any:
        """Run one unit if the budget allows; record its result or error; rewrite the document.

        Args:
            label: e.g. ``batch 32`` or a GEMM shape.
            fn: the measurement; its return value (JSON-serialisable) is stored as ``result``.
            estimate_s: seconds this unit is expected to take (default: the job's previous unit).
            limit_s: seconds after which the unit is stopped (default: the suite's
                ``max_unit_seconds``); a stopped unit is recorded as ``timed-out`` and abandons
                its job (:class:`UnitTimeout` propagates), so one pathological kernel cannot eat
                the whole budget.

        Returns:
            ``fn()``'s value, or None when skipped or failed.
        """
        estimate = self._last_unit_s if estimate_s is None else estimate_s
        entry: dict[str, Any] = {"label": label, "status": "running"}
        self.record["units"].append(entry)
        if self.suite.remaining() < estimate:
            entry.update(status="skipped", reason=f"budget: {self.suite.remaining():.0f} s left, unit needs about {estimate:.0f} s")
            self.suite.say(f"  {label}: skipped ({entry['reason']})")
            self.suite.write()
            return None
        self.suite.write()  # a process killed from outside still shows which unit was running
        start = self.suite.clock()
        limit = self.suite.max_unit_seconds if limit_s is None else limit_s
        try:
            with self.suite.time_limit(limit):
                value = fn()
        except UnitTimeout:
            entry.update(status="timed-out", seconds=round(self.suite.clock() - start, 2), reason=f"stopped after {limit:.0f} s; the rest of the job was abandoned")
            self.suite.say(f"  {label}: TIMED OUT after {limit:.0f} s")
            self.suite.write()
            raise
        except SuiteInterrupted:
            entry.update(status="interrupted", seconds=round(self.suite.clock() - start, 2))
            self.suite.write()
            raise
        except Exception as exc:  # noqa: BLE001 - a failed unit is recorded; the job goes on
            entry.update(status="failed", seconds=round(self.suite.clock() - start, 2), error=_error_record(exc))
            self.suite.say(f"  {label}: FAILED {type(exc).__name__}: {str(exc)[:300]}")
            self.suite.write()
            return None
        self._last_unit_s = self.suite.clock() - start
        entry.update(status="ok", seconds=round(self._last_unit_s, 2), result=value)
        self.suite.write()
        return value


class Suite:
    """A budgeted, resumable-on-failure sequence of jobs writing one JSON document.

    Args:
        out: output folder (created).
        name: stem of the ``.json`` and ``.log`` files.
        budget_seconds: wall-clock seconds for the whole suite, from construction.
        header: facts stored at the top of the document (machine, settings...).
        stream: where progress lines go besides the log file.
        clock: seconds, monotonic (tests pass a fake one).
        max_unit_seconds: default time limit of one unit (None: no limit); enforced while
            :meth:`run` runs the jobs, with SIGALRM, between Python bytecodes.
    """

    def __init__(self, out: str | Path, name: str, budget_seconds: float, header: dict | None = None, stream: TextIO = sys.stderr, clock: Callable[[], float] = time.monotonic, max_unit_seconds: float | None = None) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / f"{name}.json"
        self._log = open(self.out / f"{name}.log", "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._stream = stream
        self.clock = clock
        self.max_unit_seconds = max_unit_seconds
        self._alarm_armed = False
        self._start = clock()
        self.budget_seconds = budget_seconds
        self.doc: dict[str, Any] = {"suite": name, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "budget_seconds": budget_seconds, "status": "running", **(header or {}), "jobs": []}
        self.write()

    def elapsed(self) -> float:
        return self.clock() - self._start

    def remaining(self) -> float:
        return self.budget_seconds - self.elapsed()

    def say(self, line: str) -> None:
        stamped = f"[{self.elapsed():6.1f}s] {line}"
        print(stamped, file=self._stream, flush=True)
        self._log.write(stamped + "\n")
        self._log.flush()

    @contextlib.contextmanager
    def time_limit(self, seconds: float | None) -> Iterator[None]:
        """Raise :class:`UnitTimeout` in the block after ``seconds`` (only inside :meth:`run`)."""
        if not seconds or not self._alarm_armed:
            yield
            return
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def write(self) -> None:
        self.doc["elapsed_seconds"] = round(self.elapsed(), 2)
        write_json_atomic(self.path, self.doc)

    def run_job(self, name: str, fn: Callable[[Job], Any], min_seconds: float = 0.0) -> dict:
        """Run ``fn(job)``: recorded ``ok``, ``failed`` (with the error) or ``skipped`` (budget).

        A job whose body raises after some units keeps those units.
        """
        job = Job(self, name)
        if self.remaining() < min_seconds:
            job.record.update(status="skipped", reason=f"budget: {self.remaining():.0f} s left, job needs at least {min_seconds:.0f} s")
            self.say(f"{name}: skipped ({job.record['reason']})")
            self.write()
            return job.record
        self.say(f"{name}: started ({self.remaining():.0f} s of budget left)")
        self.write()
        start = self.clock()
        try:
            result = fn(job)
            if result is not None:
                job.record["result"] = result
            failed = [u for u in job.record["units"] if u["status"] == "failed"]
            job.record["status"] = "partial" if failed else "ok"
        except SuiteInterrupted:
            job.record["status"] = "interrupted"
            raise
        except JobSkipped as exc:
            job.record.update(status="skipped", reason=str(exc))
        except Exception as exc:  # noqa: BLE001 - a failed job is recorded; the suite goes on
            job.record.update(status="failed", error=_error_record(exc))
            self.say(f"{name}: FAILED {type(exc).__name__}: {str(exc)[:300]}")
        finally:
            job.record["seconds"] = round(self.clock() - start, 2)
            self.write()
        self.say(f"{name}: {job.record['status']} in {job.record['seconds']:.1f} s")
        return job.record

    def run(self, jobs: list[tuple[str, Callable[[Job], Any], float]]) -> dict:
        """Run ``(name, fn, min_seconds)`` jobs in order; SIGTERM/SIGINT stop the suite cleanly."""

        def interrupt(signum, frame):
            raise SuiteInterrupted(signal.Signals(signum).name)

        def timeout(signum, frame):
            raise UnitTimeout("unit time limit reached")

        previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
        previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, timeout)
        self._alarm_armed = True
        try:
            for name, fn, min_seconds in jobs:
                self.run_job(name, fn, min_seconds)
            self.doc["status"] = "finished"
        except SuiteInterrupted as exc:
            self.doc["status"] = f"interrupted ({exc})"
            self.say(f"suite interrupted by {exc}")
        finally:
            self._alarm_armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.write()
        return self.doc

    def close(self) -> None:
        self._log.close()
