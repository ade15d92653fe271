"""Transports: how messages move between the server (rank 0) and the worker ranks.

The round schedule (``psgrad.runtime.loop``) is written once over these verbs;
``MpiTransport`` moves bytes between MPI ranks and ``LocalTransport`` runs
every worker in this process, so the two give bit-identical runs.

Server side (rank 0)::

    buf = transport.model_buffer(t)            # where the round-t model frame may be written (or None)
    transport.send_model(t, frame, wait)       # Step 1: to every worker rank
    parts = transport.gather_states(t)         # [(rank, bytes)]: each worker's checkpoint part, when asked
    for buf, source in transport.updates(t, server):   # Step 4: each reporting agent's message, as it comes
        ...
    transport.end_round(t)
    infos = transport.gather_infos()           # at the end: the agents' scheme metrics

Worker side (ranks 1..W)::

    model = transport.receive_model(t)
    transport.send_state(data)                 # bytes: this worker's checkpoint part, when the frame asks
    transport.send_update(frame)               # one per hosted agent that reports in the round
    transport.end_round(t)
    transport.send_infos(infos)

``rank`` and ``worker_ranks`` say which part of the job runs in this process:
the server when ``rank == 0``, and a ``Worker`` for each of ``hosted_ranks``.
"""
from .local import LocalTransport

__all__ = ["LocalTransport"]
