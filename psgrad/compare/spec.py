"""The comparison config: one base run, one target, a list of contenders, each with a tuning grid.

A comparison file (YAML)::

    name: logreg_breast_cancer     # outputs go to <results_dir>/<name>/
    results_dir: results
    base:                          # an ordinary run config (psgrad/config.py) shared by every run
      task: {name: logreg, dataset: breast_cancer, partition: dirichlet, alpha: 0.5}
      optim: {lr: 1.0}
      run: {rounds: 200, eval_every: 1, workers: 8}
    target: {metric: test_accuracy, at_least: 0.95}   # or at_most: for losses and suboptimality;
                                   # count: uplink (the default), downlink, total (bits) or time (simulated s)
    seeds: 1                       # every grid point runs on run.seed, run.seed + 1, ..., run.seed + seeds - 1
    grid_policy: fixed             # or extend: push a winner off a numeric grid edge (see ``extend_axis``)
    grid_extend_max: 3             # with extend: at most this many new values per axis and side
    contenders:
      - label: qsgd
        scheme: direct
        codec: qsgd
        codec_params: {levels: 2}
        grid: {optim.lr: [0.5, 1.0], scheme.codec_params.levels: [1, 4]}
      - label: tpc-qsgd
        proposed: true
        scheme: tpc
        ...

Fair tuning: every contender's grid (the Cartesian product of its lists)
starts with the same number of points; a comparison whose grids differ in
size is refused. ``grid_policy: extend`` may then add points to some
contenders and not others; the table counts every contender's evaluated
runs so that the difference stays visible. A grid key is a dotted path into the run config (``optim.lr``,
``scheme.params.eps``, ``scheme.codec_params.levels``, ``task.batch_size``).

Every run config is built and validated when the file is loaded, so a bad
key, value, scheme or codec in any grid point stops the comparison before
the first round with a message that names the contender.
"""
import copy
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .. import config as config_mod
from ..errors import ConfigError

DIRECTIONS = {"at_most": "<=", "at_least": ">="}
TOP_KEYS = ("name", "results_dir", "base", "target", "seeds", "grid_policy", "grid_extend_max", "contenders")
GRID_POLICIES = ("fixed", "extend")
CONTENDER_KEYS = ("label", "scheme", "codec", "codec_params", "params", "proposed", "grid", "set")


@dataclass(frozen=True)
class Target:
    """``metric`` must reach ``threshold`` from below (``at_least``) or above (``at_most``)."""

    metric: str
    threshold: float
    direction: str  # at_most | at_least
    count: str = "uplink"  # what is counted to the target: uplink | downlink | total (payload bits) | time

    def met(self, value):
        """Whether ``value`` meets the target (NaN never does)."""
        if value is None or math.isnan(value):
            return False
        return value <= self.threshold if self.direction == "at_most" else value >= self.threshold

    def better(self, a, b):
        """Whether metric value ``a`` is strictly better than ``b`` (NaN is worst)."""
        if a is None or math.isnan(a):
            return False
        if b is None or math.isnan(b):
            return True
        return a < b if self.direction == "at_most" else a > b

    def __str__(self):
        return f"{self.metric} {DIRECTIONS[self.direction]} {self.threshold:g}"


class Count(NamedTuple):
    """What a target can count to reach it."""

    columns: tuple  # the metrics.csv columns summed
    axis: str       # the psgrad.plot.X_AXES axis its figure is drawn against
    label: str      # what the table calls it: "uplink bits", "simulated seconds"
    column: str     # its to-target column in table.csv and sweep.csv


COUNTS = {
    "uplink": Count(("cum_up_payload_bits",), "bits", "uplink bits", "uplink_bits_to_target"),
    "downlink": Count(("cum_down_payload_bits",), "downlink", "downlink bits", "downlink_bits_to_target"),
    "total": Count(("cum_up_payload_bits", "cum_down_payload_bits"), "total", "total bits", "total_bits_to_target"),
    # the simulated clock's seconds (docs/federated.md): runs need a clock
    "time": Count(("sim_time",), "sim_time", "simulated seconds", "seconds_to_target"),
}


@dataclass(frozen=True)
class Point:
    """One grid point of one contender: the values it sets and the run config they give."""

    label: str          # the contender's label
    values: tuple       # ((path, value), ...) in grid order
    cfg: object         # psgrad.config.Config, run.name and run.results_dir set

    @property
    def run_name(self):
        return self.cfg.run.name

    def describe(self):
        return ", ".join(f"{_short(p)}={_fmt(v)}" for p, v in self.values) or "(fixed)"


@dataclass
class Contender:
    """One contender: its grid (``path -> values``, extended in place by ``grid_policy: extend``) and its points.

    ``points`` lists the grid points in the order they were added: the initial grid's product first, then
    each extension's new points; ``step[run_name]`` is the extension step that added a point (0: the file's).
    """

    label: str
    scheme: str
    codec: str
    proposed: bool
    run_dict: dict      # the run config every point starts from (base, scheme, ``set``)
    out: Path
    grid: dict = field(default_factory=dict)
    points: list = field(default_factory=list)
    step: dict = field(default_factory=dict)

    def points_with(self, path, value):
        """The points that ``value`` on grid axis ``path`` would add (``value`` x the other axes), not yet added.

        Raises ``ConfigError`` when one of them is not a valid run config.
        """
        others = [self.grid[p] if p != path else [value] for p in self.grid]
        return [self._point(tuple(zip(self.grid, combo))) for combo in itertools.product(*others)]

    def extend(self, path, value, step):
        """Add ``value`` to grid axis ``path``; return the new points, recorded as added by extension ``step``."""
        points = self.points_with(path, value)
        self.grid[path] = sorted([*self.grid[path], value])
        for p in points:
            self._add(p, step)
        return points

    def _add(self, point, step):
        if point.run_name in self.step:
            raise ConfigError(f"contender {self.label!r}.grid: two grid points share the folder name "
                              f"{point.run_name!r}")
        self.points.append(point)
        self.step[point.run_name] = step

    def _point(self, values):
        where = f"contender {self.label!r}"
        d = copy.deepcopy(self.run_dict)
        for path, value in values:
            _put(d, path, value, f"{where}.grid")
        run_name = point_name(self.label, values)
        d.setdefault("run", {})
        d["run"]["name"] = run_name
        d["run"]["results_dir"] = str(self.out / "runs")
        try:
            cfg = config_mod.from_dict(d)
        except ConfigError as e:
            at = f" at grid point {', '.join(f'{p}={v!r}' for p, v in values)}" if values else ""
            raise ConfigError(f"{where}{at}: {e}") from None
        return Point(self.label, values, cfg)


@dataclass
class Comparison:
    name: str
    out: Path
    target: Target
    seeds: int          # runs per grid point: run.seed + 0, 1, ..., seeds - 1
    grid_policy: str    # fixed | extend
    grid_extend_max: int
    contenders: list
    source: dict        # the comparison file as loaded (after overrides), for the record

    @property
    def points(self):
        return [p for c in self.contenders for p in c.points]

    def grid_size(self):
        """Points of every contender's initial grid (the same for all)."""
        return sum(1 for s in self.contenders[0].step.values() if s == 0)

    def seeded(self, point):
        """The runs of one grid point, one per seed; the first keeps the point's own seed and folder."""
        return [point] + [with_seed(point, point.cfg.run.seed + i) for i in range(1, self.seeds)]


def load(path, overrides=()):
    """Read a comparison file, apply ``a.b=value`` overrides, and validate everything."""
    data = config_mod.read_yaml(path, "comparison file")
    for item in overrides:
        _override(data, item)
    return from_dict(data)


def _override(data, item):
    """Apply ``key.path=value`` (value read as YAML) to the comparison file's mapping."""
    parts, value = config_mod.parse_override(item, "key.path=value", "base.run.rounds=50")
    node = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):  # contenders.2.grid: a list index
            if not (part.isdigit() and int(part) < len(node)):
                raise ConfigError(f"override {item!r}: {part} is not an index of a list of {len(node)}")
            part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {parts[i - 1]} is neither a mapping nor a list")
        elif not last:
            node.setdefault(part, {})
        if last:
            node[part] = value
        else:
            node = node[part]


def from_dict(data):
    """Build a validated ``Comparison`` from nested dicts."""
    if not isinstance(data, dict):
        raise ConfigError(f"comparison must be a mapping, got {type(data).__name__}")
    if "repeats" in data:
        raise ConfigError("repeats: no longer a key; write seeds: S instead, which runs every grid point (not only "
                          "each winner) on S seeds and picks winners on the median")
    _check_keys("comparison", data, TOP_KEYS)
    for key in ("name", "target", "contenders"):
        if key not in data:
            raise ConfigError(f"comparison: missing required key {key!r}")
    name = data["name"]
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ConfigError(f"name: expected a plain folder name, got {name!r}")
    out = Path(str(data.get("results_dir", "results"))) / name
    base = data.get("base") or {}
    if not isinstance(base, dict):
        raise ConfigError(f"base: expected a run config mapping (task, scheme, downlink, optim, run), got {base!r}")
    if "scheme" in base:
        raise ConfigError("base: must not set a scheme; each contender names its own")
    try:
        config_mod.from_dict(base)
    except ConfigError as e:
        raise ConfigError(f"base: {e}") from None
    target = _target(data["target"])
    seeds = _count(data, "seeds", 1, 1, "runs of every grid point, on seeds run.seed + 0, 1, ...")
    policy = data.get("grid_policy", "fixed")
    if policy not in GRID_POLICIES:
        raise ConfigError(f"grid_policy: expected one of {', '.join(GRID_POLICIES)}, got {policy!r}")
    extend_max = _count(data, "grid_extend_max", 3, 0, "new values per grid axis and side under grid_policy: extend")
    raw = data["contenders"]
    if not isinstance(raw, list) or not raw:
        raise ConfigError("contenders: expected a non-empty list of contenders")
    contenders = [_contender(i, c, base, out) for i, c in enumerate(raw)]
    labels = [c.label for c in contenders]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ConfigError(f"contenders: duplicate label {', '.join(dupes)}; labels name the run folders")
    if target.count == "time":
        clockless = next((p for c in contenders for p in c.points if not p.cfg.clock.enabled), None)
        if clockless is not None:
            raise ConfigError(f"target.count: time counts simulated seconds, but contender {clockless.label!r} "
                              f"({clockless.describe()}) runs without a clock: set clock.uplink_mbps or clock.trace "
                              f"in base")
    sizes = {c.label: len(c.points) for c in contenders}
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{k}: {v}" for k, v in sizes.items())
        raise ConfigError(f"contenders: every grid must have the same number of points (fair tuning); got {listing}")
    return Comparison(name, out, target, seeds, policy, extend_max, contenders, copy.deepcopy(data))


def _count(data, key, default, least, what):
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ConfigError(f"{key}: expected an int >= {least} ({what}), got {value!r}")
    return value


def _target(raw):
    if not isinstance(raw, dict):
        raise ConfigError(f"target: expected a mapping like {{metric: test_accuracy, at_least: 0.95}}, got {raw!r}")
    _check_keys("target", raw, ("metric", *DIRECTIONS, "count"))
    count = raw.get("count", "uplink")
    if count not in COUNTS:
        raise ConfigError(f"target.count: expected one of {', '.join(COUNTS)}, got {count!r}")
    if not isinstance(raw.get("metric"), str):
        raise ConfigError(f"target.metric: expected a metric name (e.g. suboptimality, train_loss, test_accuracy), "
                          f"got {raw.get('metric')!r}")
    given = [k for k in DIRECTIONS if k in raw]
    if len(given) != 1:
        raise ConfigError(f"target: give exactly one of {', '.join(DIRECTIONS)}, got {given or 'neither'}")
    value = raw[given[0]]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"target.{given[0]}: expected a finite number, got {value!r}")
    return Target(raw["metric"], float(value), given[0], count)


def _contender(i, raw, base, out):
    where = f"contenders[{i}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with label, scheme, codec, ..., got {raw!r}")
    label = raw.get("label")
    if not isinstance(label, str) or not label or not all(ch.isalnum() or ch in "-_+." for ch in label):
        raise ConfigError(f"{where}.label: expected a name of letters, digits and - _ + ., got {label!r}")
    where = f"contender {label!r}"
    _check_keys(where, raw, CONTENDER_KEYS)
    if "scheme" not in raw:
        raise ConfigError(f"{where}: missing required key 'scheme'")
    proposed = raw.get("proposed", False)
    if not isinstance(proposed, bool):
        raise ConfigError(f"{where}.proposed: expected true or false, got {proposed!r}")
    run_dict = copy.deepcopy(base)
    run_dict["scheme"] = {"name": raw["scheme"], "codec": raw.get("codec", "fp32"),
                          "codec_params": copy.deepcopy(raw.get("codec_params") or {}),
                          "params": copy.deepcopy(raw.get("params") or {})}
    fixed = raw.get("set") or {}
    if not isinstance(fixed, dict):
        raise ConfigError(f"{where}.set: expected a mapping of config path -> value, got {fixed!r}")
    for path, value in fixed.items():
        _put(run_dict, path, value, f"{where}.set")
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"{where}.grid: expected a mapping of config path -> list of values, got {grid!r}")
    for path, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.grid.{path}: expected a non-empty list of values, got {values!r}")
    contender = Contender(label, raw["scheme"], run_dict["scheme"]["codec"], proposed, run_dict, out,
                          {p: list(v) for p, v in grid.items()})
    for combo in itertools.product(*grid.values()):
        contender._add(contender._point(tuple(zip(grid, combo))), 0)
    return contender


def point_name(label, values):
    """The run folder of one grid point: ``<label>-<key><value>_...`` (just ``<label>`` without a grid)."""
    if not values:
        return label
    return label + "-" + "_".join(f"{_short(p)}{_fmt(v)}" for p, v in values)


def with_seed(point, seed):
    """The same grid point under another seed, in its own run folder."""
    cfg = copy.deepcopy(point.cfg)
    cfg.run.seed = seed
    cfg.run.name = f"{point.run_name}-seed{seed}"
    return Point(point.label, point.values, cfg)


def numeric_axes(grid):
    """The axes of ``grid`` that have edges: two or more values, all numbers (true/false are not)."""
    return [p for p, vs in grid.items()
            if len(vs) >= 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vs)]


def edges(contender, point):
    """``[(path, 'min' | 'max')]``: the numeric axes of the contender's grid on whose edge ``point`` lies."""
    values = dict(point.values)
    out = []
    for path in numeric_axes(contender.grid):
        if values[path] == max(contender.grid[path]):
            out.append((path, "max"))
        elif values[path] == min(contender.grid[path]):
            out.append((path, "min"))
    return out


def beyond(values, side):
    """The next value past an axis edge: twice the largest value, or half the smallest; None if there is none.

    Integer axes stay integer (half rounded half up). An axis with a value <= 0 has no geometric next value,
    nor does a side whose next integer would repeat the edge (half of 1).
    """
    if min(values) <= 0:
        return None
    edge = max(values) if side == "max" else min(values)
    new = 2 * edge if side == "max" else edge / 2
    if all(isinstance(v, int) for v in values):
        new = math.floor(new + 0.5)
    return None if new == edge else new


def _put(d, path, value, where):
    parts = str(path).split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"{where}: key {path!r} must be a dotted config path like optim.lr or scheme.params.eps")
    if parts[0] not in config_mod.SECTIONS:
        raise ConfigError(f"{where}: key {path!r} starts with an unknown section; valid: "
                          f"{', '.join(config_mod.SECTIONS)}")
    if parts[:2] in (["run", "name"], ["run", "results_dir"]):
        raise ConfigError(f"{where}: {path} is set by the comparison (run folders are <results_dir>/<name>/runs/)")
    node = d
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: key {path!r}: {part} is not a section")
    node[parts[-1]] = copy.deepcopy(value)


def _short(path):
    return str(path).split(".")[-1]


def _fmt(v):
    return f"{v:g}" if isinstance(v, float) else str(v)


def _check_keys(where, values, valid):
    unknown = sorted(set(map(str, values)) - set(valid))
    if unknown:
        raise ConfigError(f"{where}: unknown key {', '.join(unknown)}; valid: {', '.join(valid)}")
