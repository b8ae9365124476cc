import pytest


def pytest_addoption(parser):
    parser.addoption("--sim-seeds", type=int, default=None, help="number of simulator seeds (default: per test)")
    parser.addoption("--sim-nodes", type=int, default=None, help="nodes per simulated network")
    parser.addoption("--sim-first-seed", type=int, default=0, help="first seed (replay one with --sim-seeds 1)")


@pytest.fixture
def sim_options(request):
    return request.config
