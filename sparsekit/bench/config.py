"""The measurement settings of a paired benchmark, declared once: the input of
:func:`sparsekit.bench.harness.measure_pair`, the options of ``sparsekit bench`` and recorded with
every result. Light on purpose (the CLI imports it to build its options)."""

from __future__ import annotations

from pydantic import Field, model_validator

from sparsekit.config import StrictConfig


class BenchConfig(StrictConfig):
    """How dense and sparse are measured against each other (interleaved rounds, rotated random inputs)."""

    warmup_seconds: float = Field(0.2, ge=0, description="warm-up seconds per side", json_schema_extra={"flags": ["--warmup"], "metavar": "S"})
    rounds: int = Field(10, ge=1, description="interleaved rounds (A B A B ...) at least; the speedup's interval is bootstrapped over them")
    max_rounds: int = Field(60, ge=1, description="more rounds, up to this many, while the interval is wider than target_width (a noisy CPU needs them; a steady GPU stops at rounds); giving rounds alone fixes the count")
    target_width: float = Field(0.04, gt=0, description="stop adding rounds once the interval's width is at most this share of the speedup")
    budget_seconds: float = Field(60.0, gt=0, description="stop adding rounds once one batch size has been measured this long", json_schema_extra={"metavar": "S"})
    min_iters: int = Field(10, ge=1, description="minimum calls per side per round")
    round_seconds: float = Field(0.3, ge=0, description="minimum seconds per side per round", json_schema_extra={"metavar": "S"})
    buffers: int = Field(8, ge=1, description="rotated input buffers (random, never one reused input sitting in cache)")
    level: float = Field(0.95, gt=0, lt=1, description="confidence level of the speedup's interval")
    seed: int = Field(0, description="seed of the inputs and the bootstrap")

    @model_validator(mode="before")
    @classmethod
    def _fixed_when_rounds_alone(cls, data):
        """``rounds`` given without ``max_rounds`` means exactly that many rounds."""
        if isinstance(data, dict) and data.get("rounds") is not None and data.get("max_rounds") is None:
            data = {**data, "max_rounds": data["rounds"]}
        return data

    @model_validator(mode="after")
    def _ordered(self):
        if self.max_rounds < self.rounds:
            raise ValueError(f"max_rounds ({self.max_rounds}) is below rounds ({self.rounds})")
        return self

