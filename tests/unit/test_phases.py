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


def test_pack_into_a_reused_buffer_gives_the_same_bytes_as_a_fresh_frame():
    data = np.arange(10, dtype=np.uint8)
    fresh = wire.pack(wire.Kind.MODEL, 3, wire.ALL_AGENTS, data, 80)
    out = np.full(fresh.shape, 255, np.uint8)
    assert wire.pack(wire.Kind.MODEL, 3, wire.ALL_AGENTS, data, 80, out=out) is out
    assert out.tobytes() == fresh.tobytes()
    with pytest.raises(ValueError, match="out must be"):
        wire.pack(wire.Kind.MODEL, 3, wire.ALL_AGENTS, data, 80, out=out[:-1])
