import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def mpi_comm():
    """MPI.COMM_WORLD, for the tests under ``mpirun ... pytest --with-mpi``."""
    from mpi4py import MPI

    return MPI.COMM_WORLD
