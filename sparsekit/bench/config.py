"""The measurement settings of a paired benchmark, declared once: the input of
:func:`sparsekit.bench.harness.measure_pair`, the options of ``sparsekit bench`` and recorded with
every result. Light on purpose (the CLI imports it to build its options)."""

from __future__ import annotations

from pydantic import Field

from sparsekit.config import StrictConfig


class BenchConfig(StrictConfig):
    """How dense and sparse are measured against each other (interleaved rounds, rotated random inputs)."""

    warmup_seconds: float = Field(0.2, ge=0, description="warm-up seconds per side", json_schema_extra={"flags": ["--warmup"], "metavar": "S"})
    rounds: int = Field(10, ge=1, description="interleaved rounds (A B A B ...); the speedup's interval is bootstrapped over them")
    min_iters: int = Field(10, ge=1, description="minimum calls per side per round")
    round_seconds: float = Field(0.3, ge=0, description="minimum seconds per side per round", json_schema_extra={"metavar": "S"})
    buffers: int = Field(8, ge=1, description="rotated input buffers (random, never one reused input sitting in cache)")
    level: float = Field(0.95, gt=0, lt=1, description="confidence level of the speedup's interval")
    seed: int = Field(0, description="seed of the inputs and the bootstrap")
