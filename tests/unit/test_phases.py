import time

import numpy as np
import pytest

from psgrad import wire
from psgrad.runtime.phases import Phases


def test_phases_add_up_per_round_and_other_is_the_untimed_rest():
    p = Phases()
    p.begin()
    with p("a"):
        time.sleep(0.01)
    time.sleep(0.01)
    p.close_round()
    row = p.rounds[0]
    assert row["a"] >= 0.01 and row["other"] >= 0.01
    assert row["round"] == pytest.approx(row["a"] + row["other"])
    assert p.totals()["round"] == row["round"]


def test_cpu_phases_count_the_threads_work_not_the_time_it_waited(monkeypatch):
    monkeypatch.setattr(Phases, "cpu", True)
    p = Phases()
    with p("waiting"):
        time.sleep(0.05)
    with p("working"):
        t0 = time.thread_time()
        while time.thread_time() - t0 < 0.02:
            pass
    p.close_round()
    wall, cpu = p.rounds[0], p.cpu_rounds[0]
    assert set(cpu) == {"waiting", "working"}
    assert wall["waiting"] >= 0.05 and cpu["waiting"] < 0.5 * wall["waiting"]
    assert cpu["working"] >= 0.02
    monkeypatch.setattr(Phases, "cpu", False)
    q = Phases()
    with q("a"):
        pass
    q.close_round()
    assert q.cpu_rounds == [] and set(q.rounds[0]) == {"a", "round", "other"}


def test_pack_into_a_reused_buffer_gives_the_same_bytes_as_a_fresh_frame():
    data = np.arange(10, dtype=np.uint8)
    fresh = wire.pack(wire.Kind.MODEL, 3, wire.ALL_AGENTS, data, 80)
    out = np.full(fresh.shape, 255, np.uint8)
    assert wire.pack(wire.Kind.MODEL, 3, wire.ALL_AGENTS, data, 80, out=out) is out
    assert out.tobytes() == fresh.tobytes()
    with pytest.raises(ValueError, match="out must be"):
        wire.pack(wire.Kind.MODEL, 3, wire.ALL_AGENTS, data, 80, out=out[:-1])
