"""``python -m psgrad.compare CONFIG``: uplink bits to reach a target, for every contender, tuned fairly.

See ``spec.py`` for the comparison file, ``table.py`` for how bits-to-target
and the best grid point are defined, ``sweep.py`` for how runs are launched.
"""
from .spec import Comparison, Target, from_dict, load
from .sweep import run_comparison
from .table import reach, run_result

__all__ = ["Comparison", "Target", "from_dict", "load", "reach", "run_comparison", "run_result"]
