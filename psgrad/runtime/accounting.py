"""Exact bit accounting: every message's payload, header, padding and digest bits.

Payload bits are what a scheme wrote (the number papers quote); wire bytes
are what the transport moved (header + payload rounded up to bytes + optional
state digest), and must equal the byte count the receiver saw.
"""
from dataclasses import dataclass, field
from typing import NamedTuple

from .. import wire

# per-message columns of agents.csv, in order
MESSAGE_FIELDS = ("round", "agent", "payload_bits", "header_bits", "padding_bits", "digest_bits", "wire_bytes",
                  "received_bytes", "loss", "status")
# per-round uplink/downlink columns of metrics.csv, in order
ROUND_FIELDS = ("up_payload_bits", "up_header_bits", "up_padding_bits", "up_digest_bits", "up_wire_bytes",
                "down_payload_bits", "down_wire_bytes")
CUMULATIVE_FIELDS = ("cum_up_payload_bits", "cum_up_wire_bytes", "cum_down_payload_bits", "cum_down_wire_bytes",
                     "cum_total_bits")  # the last: payload bits of both directions
# The cumulative counters as one value, for checkpoints
Totals = NamedTuple("Totals", [(name, int) for name in CUMULATIVE_FIELDS])


# A frame may carry at most this many payload bits per coordinate (plus a fixed allowance) before the
# server calls it oversized: fp32 needs 32.
MAX_BITS_PER_COORDINATE = 64
MAX_EXTRA_BITS = 2**20


def max_update_bytes(d):
    """The largest uplink frame the server accepts."""
    return wire.frame_bytes(MAX_BITS_PER_COORDINATE * d + MAX_EXTRA_BITS, True)


def message_record(round_, frame, received_bytes, status="ok"):
    """One agents.csv row for an uplink frame of ``received_bytes`` bytes (status: ok or skipped)."""
    nbits = frame.nbits
    return {
        "round": round_, "agent": frame.agent, "payload_bits": nbits, "header_bits": wire.HEADER_BITS,
        "padding_bits": 8 * ((nbits + 7) // 8) - nbits,
        "digest_bits": 8 * wire.DIGEST_BYTES if frame.digest is not None else 0,
        "wire_bytes": frame.wire_bytes, "received_bytes": received_bytes, "loss": frame.loss, "status": status,
    }


@dataclass
class Ledger:
    """Running totals of what crossed the wire, both directions."""

    totals: dict = field(default_factory=lambda: dict.fromkeys(CUMULATIVE_FIELDS, 0))

    def close_round(self, messages, down_payload_bits, down_wire_bytes):
        """Sum one round's uplink ``messages`` and the downlink; return the metrics.csv bit columns."""
        row = {
            "up_payload_bits": sum(m["payload_bits"] for m in messages),
            "up_header_bits": sum(m["header_bits"] for m in messages),
            "up_padding_bits": sum(m["padding_bits"] for m in messages),
            "up_digest_bits": sum(m["digest_bits"] for m in messages),
            "up_wire_bytes": sum(m["wire_bytes"] for m in messages),
            "down_payload_bits": down_payload_bits,
            "down_wire_bytes": down_wire_bytes,
        }
        t = self.totals
        t["cum_up_payload_bits"] += row["up_payload_bits"]
        t["cum_up_wire_bytes"] += row["up_wire_bytes"]
        t["cum_down_payload_bits"] += down_payload_bits
        t["cum_down_wire_bytes"] += down_wire_bytes
        t["cum_total_bits"] = t["cum_up_payload_bits"] + t["cum_down_payload_bits"]
        return {**row, **t}
