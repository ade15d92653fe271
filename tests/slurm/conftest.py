"""Tests under tests/slurm start a real SLURM cluster; they run only when asked for with ``-m slurm``."""
import pytest


def pytest_collection_modifyitems(config, items):
    if "slurm" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="starts a real SLURM cluster as root; run with: python -m pytest -m slurm tests/slurm")
    for item in items:
        if "slurm" in item.keywords:
            item.add_marker(skip)
