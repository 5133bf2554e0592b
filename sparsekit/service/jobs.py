"""The job store: SQLite, survives restarts, terminal states immutable, identical requests join.

States: QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED. A job's ``key`` is its engine key
(content hash of ONNX, canonical spec, target, kit version): a request whose key matches a
SUCCEEDED job is a cache hit; one whose key matches a QUEUED/RUNNING job joins it.

Each job has an ``owner``: an identity of the bearer token that submitted it (never the token),
or None (submitted without auth, or before owners were kept). Hits and joins stay within one
owner: another owner's identical request gets a job of its own (a cache hit is copied into a
new SUCCEEDED job that points at the same engine; a request identical to another owner's build
in flight is queued, and waits for that build to finish so it can use the cached engine).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    request TEXT NOT NULL,
    onnx_path TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker_pid INTEGER,
    worker_start INTEGER,
    error TEXT,
    result TEXT,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS jobs_key ON jobs(key, state);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, created);
"""


@dataclass
class Job:
    """One build job (timestamps in Unix seconds).

    Attributes:
        request: ``{"spec": ..., "bench": bool, "target": ...}`` as submitted.
        error: ``{"stage", "message", "hint"}`` for FAILED/CANCELLED jobs.
        result: ``{"record": folder, "artifacts": {...}}`` for SUCCEEDED jobs.
        worker_pid / worker_start: the build process of a RUNNING job and its start time (clock
            ticks after boot, from ``/proc``), so a later server can tell it from a reused pid.
        owner: identity of the token that submitted it (see the module docstring); not shown.
    """

    id: str
    key: str
    state: str
    request: dict
    onnx_path: str
    created: float
    started: float | None
    finished: float | None
    attempts: int
    worker_pid: int | None
    error: dict | None
    result: dict | None
    worker_start: int | None = None
    owner: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        for private in ("onnx_path", "worker_pid", "worker_start", "owner"):
            d.pop(private)
        return d


def _row(r: sqlite3.Row) -> Job:
    return Job(r["id"], r["key"], r["state"], json.loads(r["request"]), r["onnx_path"], r["created"], r["started"], r["finished"], r["attempts"], r["worker_pid"], json.loads(r["error"]) if r["error"] else None, json.loads(r["result"]) if r["result"] else None, r["worker_start"], r["owner"])


class JobStore:
    """SQLite job store at ``path`` (WAL mode; one writer at a time, serialized by a lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            columns = {r[1] for r in db.execute("PRAGMA table_info(jobs)")}
            if "worker_start" not in columns:  # a database from before worker start times were kept
                db.execute("ALTER TABLE jobs ADD COLUMN worker_start INTEGER")
            if "owner" not in columns:  # from before owners were kept: its jobs have none
                db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")
            db.execute("CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner, created)")
            db.commit()
        finally:
            db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # BEGIN itself may have failed (disk full, I/O error)
                    with contextlib.suppress(sqlite3.Error):  # the error that got us here is re-raised
                        db.execute("ROLLBACK")
                raise
            finally:
                db.close()

    def submit(self, key: str, request: dict, onnx_path: str, owner: str | None = None) -> tuple[Job, str]:
        """Create a job for ``owner``, or return that owner's existing one with the same key.

        Returns:
            ``(job, how)`` with ``how`` in ``created`` / ``joined`` (the owner's identical job in
            flight) / ``cached`` (an identical job already succeeded: the owner's own, or a new
            SUCCEEDED job of the owner's carrying another owner's result).
        """
        with self._tx() as db:
            hit = db.execute("SELECT * FROM jobs WHERE key=? AND state=? ORDER BY owner IS ? DESC, finished DESC LIMIT 1", (key, SUCCEEDED, owner)).fetchone()
            if hit and hit["owner"] == owner:
                return _row(hit), "cached"
            if hit:
                result = {**json.loads(hit["result"] or "{}"), "cached": True}
                now = time.time()
                job_id = uuid.uuid4().hex
                db.execute(
                    "INSERT INTO jobs (id, key, state, request, onnx_path, created, finished, result, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (job_id, key, SUCCEEDED, json.dumps(request, sort_keys=True), onnx_path, now, now, json.dumps(result), owner),
                )
                return _row(db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()), "cached"
            live = db.execute("SELECT * FROM jobs WHERE key=? AND state IN (?, ?) AND owner IS ? ORDER BY created LIMIT 1", (key, QUEUED, RUNNING, owner)).fetchone()
            if live:
                return _row(live), "joined"
            job_id = uuid.uuid4().hex
            db.execute("INSERT INTO jobs (id, key, state, request, onnx_path, created, owner) VALUES (?, ?, ?, ?, ?, ?, ?)", (job_id, key, QUEUED, json.dumps(request, sort_keys=True), onnx_path, time.time(), owner))
            return _row(db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()), "created"

    def get(self, job_id: str) -> Job | None:
        with self._tx() as db:
            r = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _row(r) if r else None

    def list(self, limit: int = 100, owner: str | None = None, everyone: bool = False) -> list[Job]:
        """The newest ``limit`` jobs of ``owner`` (of every owner when ``everyone``)."""
        with self._tx() as db:
            if everyone:
                return [_row(r) for r in db.execute("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,)).fetchall()]
            return [_row(r) for r in db.execute("SELECT * FROM jobs WHERE owner IS ? ORDER BY created DESC LIMIT ?", (owner, limit)).fetchall()]

    def claim_next(self, backend: str | None = None) -> Job | None:
        """Move the oldest QUEUED job (of ``backend``) to RUNNING and return it. A job whose key
        is being built (another owner's identical request) waits: it then finds the engine cached."""
        with self._tx() as db:
            building = {r[0] for r in db.execute("SELECT key FROM jobs WHERE state=?", (RUNNING,)).fetchall()}
            for r in db.execute("SELECT * FROM jobs WHERE state=? ORDER BY created", (QUEUED,)).fetchall():
                job = _row(r)
                if job.key in building or (backend and job.request["spec"].get("backend") != backend):
                    continue
                db.execute("UPDATE jobs SET state=?, started=?, attempts=attempts+1 WHERE id=? AND state=?", (RUNNING, time.time(), job.id, QUEUED))
                return _row(db.execute("SELECT * FROM jobs WHERE id=?", (job.id,)).fetchone())
        return None

    def set_worker(self, job_id: str, pid: int | None, start: int | None = None) -> None:
        """Record the build process of a RUNNING job (``start``: its start time, see :class:`Job`)."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET worker_pid=?, worker_start=? WHERE id=?", (pid, start, job_id))

    def release(self, job_id: str) -> bool:
        """Put a RUNNING job back in the queue without counting the attempt (the service stopped,
        or could not start its worker). False if the job was no longer RUNNING."""
        with self._tx() as db:
            cur = db.execute("UPDATE jobs SET state=?, started=NULL, worker_pid=NULL, worker_start=NULL, attempts=MAX(attempts - 1, 0) WHERE id=? AND state=?", (QUEUED, job_id, RUNNING))
            return cur.rowcount == 1

    def running_workers(self) -> list[tuple[str, int, int | None]]:
        """``(job id, worker pid, worker start time)`` of every RUNNING job with a recorded worker."""
        with self._tx() as db:
            return [(r["id"], r["worker_pid"], r["worker_start"]) for r in db.execute("SELECT id, worker_pid, worker_start FROM jobs WHERE state=? AND worker_pid IS NOT NULL", (RUNNING,)).fetchall()]

    def onnx_paths(self) -> set[str]:
        """The upload files any job refers to."""
        with self._tx() as db:
            return {r[0] for r in db.execute("SELECT DISTINCT onnx_path FROM jobs").fetchall()}

    def finish(self, job_id: str, state: str, result: dict | None = None, error: dict | None = None) -> bool:
        """Move a non-terminal job to a terminal ``state``; False if it was already terminal."""
        if state not in TERMINAL:
            raise ValueError(state)
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE jobs SET state=?, finished=?, result=?, error=?, worker_pid=NULL, worker_start=NULL WHERE id=? AND state NOT IN ({','.join('?' * len(TERMINAL))})",
                (state, time.time(), json.dumps(result) if result else None, json.dumps(error) if error else None, job_id, *TERMINAL),
            )
            return cur.rowcount == 1

    def recover(self, max_attempts: int = 2) -> dict[str, int]:
        """After a restart: RUNNING jobs are re-queued while attempts remain, else FAILED. Never left
        stuck. Their workers must be gone first (see ``sparsekit.service.recovery``)."""
        with self._tx() as db:
            rows = db.execute("SELECT id, attempts FROM jobs WHERE state=?", (RUNNING,)).fetchall()
            requeued = failed = 0
            for r in rows:
                if r["attempts"] < max_attempts:
                    db.execute("UPDATE jobs SET state=?, started=NULL, worker_pid=NULL, worker_start=NULL WHERE id=?", (QUEUED, r["id"]))
                    requeued += 1
                else:
                    err = {"stage": "worker", "message": "the service stopped while this build ran, too many times", "hint": "submit again; check the service logs"}
                    db.execute("UPDATE jobs SET state=?, finished=?, error=?, worker_pid=NULL, worker_start=NULL WHERE id=?", (FAILED, time.time(), json.dumps(err), r["id"]))
                    failed += 1
        return {"requeued": requeued, "failed": failed}

    def counts(self) -> dict[str, int]:
        with self._tx() as db:
            return {r["state"]: r["n"] for r in db.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state").fetchall()}

    def build_seconds(self) -> list[float]:
        with self._tx() as db:
            return [r[0] for r in db.execute("SELECT finished - started FROM jobs WHERE state=? AND started IS NOT NULL", (SUCCEEDED,)).fetchall()]
