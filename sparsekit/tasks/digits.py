"""scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), classified by the zoo CNN.

Small and offline: it proves the conv / BatchNorm / QAT path end to end, not method quality
(digits is easy; 2:4 one-shot loses little on it).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sparsekit.errors import MissingDependencyError, SparsekitError
from sparsekit.tasks.base import EvalResult, Task, register_task


def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train [N, 1, 8, 8] float32 in 0..1, y_train [N] int64, x_test, y_test)``, stratified."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise MissingDependencyError("the digits task needs scikit-learn, which is not installed", "pip install 'sparsekit[tasks]'") from exc
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    y = data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return x_tr, y_tr, x_te, y_te


MAX_IMAGE_SIZE = 512
"""Largest upsampled image side (1,797 images of 512x512 float32 are 1.9 GB)."""


@register_task("digits")
class DigitsTask(Task):
    name = "digits"
    description = "scikit-learn digits (8x8 grayscale, 10 classes), zoo CNN 32-64-128 channels; metric: test accuracy (%)"
    model = ("cnn", {"in_channels": 1, "image_size": 8, "width": 32})
    primary = "accuracy"
    distill_output = "logits"

    def __init__(self, seed: int = 0, image_size: int = 8, width: int = 32) -> None:
        """``image_size`` > 8 upsamples the images (bilinear) to that size, e.g. 32 for a
        CIFAR-sized input to the same CNN; ``width`` is the CNN's first-stage width."""
        if not 8 <= image_size <= MAX_IMAGE_SIZE:
            raise SparsekitError(f"digits image_size must be in [8, {MAX_IMAGE_SIZE}], got {image_size}", "use 8 (native) or a larger size such as 32")
        self.x_train, self.y_train, self.x_test, self.y_test = load_digits_split(seed=seed)
        if image_size != 8:
            up = lambda x: F.interpolate(torch.from_numpy(x), size=(image_size, image_size), mode="bilinear", align_corners=False).numpy()  # noqa: E731
            self.x_train, self.x_test = up(self.x_train), up(self.x_test)
        self.model = ("cnn", {"in_channels": 1, "image_size": image_size, "width": width})

    def train_batches(self, batch_size: int, seed: int = 0):
        x, y = torch.from_numpy(self.x_train), torch.from_numpy(self.y_train)

        def batches(epoch: int):
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
            return [((x[idx],), y[idx]) for idx in order.split(batch_size)]

        return batches

    def calibration(self, samples: int, batch_size: int = 16) -> list[tuple]:
        x = torch.from_numpy(self.x_train[:samples])
        return [(chunk,) for chunk in x.split(batch_size)]

    def task_loss(self, model, batch):
        (x,), y = batch
        return F.cross_entropy(model(x), y)

    @torch.no_grad()
    def evaluate(self, model, reference: EvalResult | None = None) -> EvalResult:
        model.eval()
        logits = torch.cat([model(chunk) for chunk in torch.from_numpy(self.x_test).split(256)]).float()
        pred = logits.argmax(1).numpy()
        correct = (pred == self.y_test).astype(np.float64)
        metrics = {"accuracy": 100.0 * float(correct.mean())}
        if reference is not None:
            metrics["agreement"] = 100.0 * float((pred == reference.outputs.argmax(1)).mean())
        return EvalResult(metrics, correct, logits.numpy())
