"""Bit-level primitives: cursors, integer codes, shared randomness, rotations."""
from .bits import BitReader, BitWriter, check_payload, new_buffer, read_bits, read_f32, write_bits, write_f32
from .codes import (read_delta, read_gamma, read_omega, read_rice, write_delta, write_gamma, write_omega,
                    write_rice, delta_len, gamma_len, omega_len, rice_len)
from .hadamard import padded_length, rotate, unrotate
from .rng import draw_normal, draw_u64, draw_uniform, stream_key
