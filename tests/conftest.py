"""Shared test fixtures: the real data subsets in ../shared/data and deterministic torch."""
from pathlib import Path

import pytest
import torch

from tests.engine_fixtures import TIMINGS
from tests.seeds import OFFSET, seed

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(seed(0))
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real CIFAR-10 / CIFAR-100 / VOC2007 subsets (never copied into the repo)."""
    if not SHARED_DATA.is_dir():
        raise FileNotFoundError(f"expected the shared data sets at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread for the whole suite: results do not depend on the core count, and on a
    busy 2-core machine OpenMP threads do not spin against each other."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def pytest_report_header(config):
    return f"TEST_SEED_OFFSET={OFFSET} (learning tests: pytest -m learning)"


def pytest_terminal_summary(terminalreporter):
    """The wall time of every end-to-end subprocess (dvc repro, dvc exp run, torchrun)."""
    if TIMINGS:
        terminalreporter.section("end-to-end timings")
        for what, seconds in TIMINGS:
            terminalreporter.write_line(f"{what}: {seconds:.0f} s")
