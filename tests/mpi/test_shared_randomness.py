"""Agent and server draw the same shared randomness: encode on rank 0, decode on rank 1.

Rank 1 receives the bytes over MPI, decodes them, and compares against its own
local encode and decode with the same key: the bytes and the decoded vectors
must be identical, for every registered codec. Run with
``mpirun -n 2 python -m pytest --with-mpi tests/mpi/test_shared_randomness.py``.
"""
import numpy as np
import pytest

import psgrad


@pytest.mark.mpi(min_size=2)
def test_every_codec_decodes_on_another_process_what_the_encoder_meant():
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    d = 5000
    for i, name in enumerate(psgrad.codecs()):
        c = psgrad.codec(name)
        key = psgrad.Key(seed=42, agent=3, round=17 + i)
        x = np.random.default_rng(i).standard_normal(d).astype(np.float32)
        if rank == 0:
            enc = c.encode(x, key)
            comm.send(enc.nbits, dest=1, tag=2 * i)
            comm.Send(np.ascontiguousarray(enc.data), dest=1, tag=2 * i + 1)
        elif rank == 1:
            nbits = comm.recv(source=0, tag=2 * i)
            data = np.empty((nbits + 7) // 8, np.uint8)
            comm.Recv(data, source=0, tag=2 * i + 1)
            remote = c.decode(data, nbits, d, key)
            local = c.encode(x, key)
            assert local.nbits == nbits and np.array_equal(local.data, data), f"{name}: bytes differ"
            assert np.array_equal(remote, c.decode(local.data, local.nbits, d, key)), f"{name}: decodes differ"
    comm.Barrier()
