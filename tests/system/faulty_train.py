"""``psgrad.train`` with a fault injected on one rank, for the failure and preemption tests.

    mpirun -n 3 python tests/system/faulty_train.py MODE RANK [psgrad.train options]

MODE: raise (an exception in agent work), hang (agent work never returns),
die (the process exits abruptly), server-raise (an exception in the server
while it decodes agent 1's message; RANK is ignored), pause (write the file
``paused`` into $PSGRAD_FAULT_DIR, then sleep $PSGRAD_PAUSE seconds, default
600: the test kills or signals the job meanwhile), late (rank RANK sleeps
$PSGRAD_PAUSE seconds before the start-up handshake), none. The fault hits rank
RANK in round $PSGRAD_FAULT_ROUND (default 2). Every rank writes its pid to
$PSGRAD_FAULT_DIR/pid.RANK when that variable is set.
"""
import os
import sys
import time
from pathlib import Path

from mpi4py import MPI

from psgrad import train
from psgrad.runtime import server, worker
from psgrad.transport import mpi as transport

mode, fault_rank = sys.argv[1], int(sys.argv[2])
fault_round = int(os.environ.get("PSGRAD_FAULT_ROUND", "2"))
fault_dir = os.environ.get("PSGRAD_FAULT_DIR")
rank = MPI.COMM_WORLD.Get_rank()
if fault_dir:
    Path(fault_dir, f"pid.{rank}").write_text(str(os.getpid()))
original = worker.Worker._agent_round
original_handshake = transport.handshake
original_receive = server.Server._reconstruct


def faulty(self, a, t, *args):
    if rank == fault_rank and t == fault_round:
        if mode == "raise":
            raise RuntimeError("injected fault")
        if mode == "hang":
            time.sleep(3600)
        if mode == "die":
            os._exit(9)
        if mode == "pause" and a == self.agents[0]:
            Path(fault_dir, "paused").write_text(str(t))
            time.sleep(float(os.environ.get("PSGRAD_PAUSE", "600")))
    return original(self, a, t, *args)


def faulty_reconstruct(self, a, t, *args):
    if mode == "server-raise" and t == fault_round and a == 1:
        raise RuntimeError("injected fault")
    return original_receive(self, a, t, *args)


def late_handshake(comm, cfg, extra=()):
    if mode == "late" and rank == fault_rank:
        time.sleep(float(os.environ.get("PSGRAD_PAUSE", "600")))
    return original_handshake(comm, cfg, extra)


worker.Worker._agent_round = faulty
transport.handshake = late_handshake
server.Server._reconstruct = faulty_reconstruct
sys.exit(train.main(sys.argv[3:]))
