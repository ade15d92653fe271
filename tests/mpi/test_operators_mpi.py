"""Agent and server in two processes draw the same shared randomness: rank 1 encodes, rank 0 decodes."""
import numpy as np
import pytest

import psgrad


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name,params", [("spherical", {}), ("spherical", {"unbiased": False}),
                                         ("spherical", {"m": 8, "bits": 6}), ("sparse_dither", {})])
def test_a_payload_encoded_on_one_rank_decodes_on_another_to_the_same_vector(name, params):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    codec = psgrad.codec(name, **params)
    key = psgrad.Key(seed=9, agent=1, round=4)
    x = np.random.default_rng(2).standard_t(3, 3000).astype(np.float32)
    if comm.rank == 1:
        enc = codec.encode(x, key)
        local = codec.decode(enc.data, enc.nbits, len(x), key)
        comm.send((enc.data, enc.nbits, local), dest=0, tag=7)
    elif comm.rank == 0:
        data, nbits, local = comm.recv(source=1, tag=7)
        assert np.array_equal(codec.decode(data, nbits, len(x), key), local)
    comm.Barrier()
