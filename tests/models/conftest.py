"""Fixtures for tests of small models (modules opt in with ``pytestmark = pytest.mark.usefixtures(
"one_torch_thread", "frozen_import_heap")``); they keep them fast on a loaded 2-core machine:

* one intra-op thread: OpenMP threads of tiny matmuls spin against each other there and run
  10-100x slower than one thread;
* the heap that imports left behind (transformers, ModelOpt, ONNX: ~0.5 M objects) is frozen out of
  the garbage collector for the module, so the export's explicit ``gc.collect()`` between stages
  scans only what the test allocates (about 1 s per call otherwise).
"""

import gc

import pytest


@pytest.fixture
def one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def frozen_import_heap():
    import modelopt.torch.opt  # noqa: F401 - imported before freezing
    import onnx  # noqa: F401

    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()
