"""Project-wide pytest set-up: offline hub, pinned threads, seeded RNGs.

The markers ``gpu`` (skipped with a reason when CUDA is absent) and ``slow`` come from samp's pytest plugin
(``samp.bench.plugin``, installed with the package), so any benchmark suite that uses samp gets them too.
"""
import os
import random

# Tests must never reach the Hugging Face hub: every model and dataset they use is built or shipped locally.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np
import pytest
import torch
from hypothesis import settings
from threadpoolctl import threadpool_limits

# Property tests draw the same examples on every run (CI must not turn red by the luck of a draw);
# `pytest --hypothesis-profile=explore` draws new ones.
settings.register_profile("samp", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, print_blob=True)
settings.load_profile("samp")


def pytest_addoption(parser):
    parser.addoption(
        "--samp-threads",
        type=int,
        default=1,
        help="torch intra-op threads for tests and benchmarks (the CI box is shared; 1 keeps timings steady)",
    )


def pytest_configure(config):
    threads = config.getoption("--samp-threads")
    torch.set_num_threads(threads)
    # numpy's BLAS as well: samp's CPU Gram products run there (samp.methods.primitives.cpu_gram)
    threadpool_limits(threads, user_api="blas")
    # Denormals in tiny random models slowed CPU runs several-fold on this machine.
    torch.set_flush_denormal(True)


@pytest.fixture(autouse=True)
def _seed_rngs():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
