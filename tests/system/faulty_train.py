"""``psgrad.train`` with a fault injected on one rank, for the failure tests.

    mpirun -n 3 python tests/system/faulty_train.py MODE RANK [psgrad.train options]

MODE: raise (an exception in agent work), hang (agent work never returns),
die (the process exits abruptly), none. The fault hits rank RANK in round 2.
"""
import os
import sys
import time

from mpi4py import MPI

from psgrad import train
from psgrad.runtime import worker

mode, fault_rank = sys.argv[1], int(sys.argv[2])
original = worker.Worker._agent_round


def faulty(self, a, t, *args):
    if MPI.COMM_WORLD.Get_rank() == fault_rank and t == 2:
        if mode == "raise":
            raise RuntimeError("injected fault")
        if mode == "hang":
            time.sleep(3600)
        if mode == "die":
            os._exit(9)
    return original(self, a, t, *args)


worker.Worker._agent_round = faulty
sys.exit(train.main(sys.argv[3:]))
