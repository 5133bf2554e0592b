"""The service's in-process counters and their Prometheus text exposition (``/metrics``)."""

from __future__ import annotations

import threading
from collections import Counter

from sparsekit.service.jobs import QUEUED, RUNNING, TERMINAL

REJECT_REASONS = ("size", "empty", "timeout", "busy", "disconnected", "disk_full", "storage", "archive")


class Metrics:
    """In-process counters; job counts come from the store."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cache_hits = 0
        self.joins = 0
        self.submits = 0
        self.rejected_uploads: Counter[str] = Counter()

    def bump(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)

    def reject(self, reason: str) -> None:
        with self.lock:
            self.rejected_uploads[reason] += 1


def exposition(metrics: Metrics, counts: dict[str, int], seconds: list[float], uploads_active: int, slots_unhealthy: int) -> str:
    """The Prometheus text format of the counters, the job store's ``counts`` (by state) and build
    ``seconds`` (succeeded builds), the uploads in progress and the unhealthy build slots."""
    lines = ["# HELP sparsekit_builds Builds by state.", "# TYPE sparsekit_builds gauge"]
    lines += [f'sparsekit_builds{{state="{s}"}} {counts.get(s, 0)}' for s in (QUEUED, RUNNING, *TERMINAL)]
    lines += ["# HELP sparsekit_queue_depth Builds waiting.", "# TYPE sparsekit_queue_depth gauge", f"sparsekit_queue_depth {counts.get(QUEUED, 0)}"]
    lines += ["# HELP sparsekit_build_seconds Wall time of succeeded builds.", "# TYPE sparsekit_build_seconds summary", f"sparsekit_build_seconds_sum {sum(seconds):.3f}", f"sparsekit_build_seconds_count {len(seconds)}"]
    lines += ["# HELP sparsekit_cache_hits_total Submissions served from the cache.", "# TYPE sparsekit_cache_hits_total counter", f"sparsekit_cache_hits_total {metrics.cache_hits}"]
    lines += ["# HELP sparsekit_joins_total Submissions that joined an identical build in flight.", "# TYPE sparsekit_joins_total counter", f"sparsekit_joins_total {metrics.joins}"]
    lines += ["# HELP sparsekit_rejected_uploads_total Uploads refused, by reason.", "# TYPE sparsekit_rejected_uploads_total counter"]
    lines += [f'sparsekit_rejected_uploads_total{{reason="{r}"}} {metrics.rejected_uploads[r]}' for r in REJECT_REASONS]
    lines += ["# HELP sparsekit_uploads_in_progress Uploads being received.", "# TYPE sparsekit_uploads_in_progress gauge", f"sparsekit_uploads_in_progress {uploads_active}"]
    lines += ["# HELP sparsekit_build_slots_unhealthy Build slots failing or stopped.", "# TYPE sparsekit_build_slots_unhealthy gauge", f"sparsekit_build_slots_unhealthy {slots_unhealthy}"]
    return "\n".join(lines) + "\n"
