"""Shared setup of the adapter tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def _single_threaded() -> Iterator[None]:
    # The models here are tiny: on a shared 2-core machine the torch and BLAS thread pools
    # cost far more in synchronisation than they gain (measured 5-8x slower under load).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)
