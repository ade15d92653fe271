"""Typed run configuration: dataclasses, YAML files and ``--set a.b=value`` overrides.

A config has six sections (task, scheme, downlink, optim, run, clock); every field has a
default, so an empty file (or none) is a complete config: logistic regression on breast_cancer, TPC with
a QSGD residual. The default job that ``python -m psgrad.train`` runs without ``--config`` is
``DEFAULT_JOB`` (the MNIST MLP). Unknown keys
list the valid ones; wrong types and out-of-range values say what was
expected. ``psgrad.train`` turns a ``ConfigError`` into one line and status 2.
"""
import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from .errors import ConfigError


DEFAULT_JOB = Path(__file__).with_name("default.yaml")


@dataclass
class TaskConfig:
    """The learning problem and how its data is split among agents."""

    name: str = "logreg"            # linreg | logreg | mlp | cnn | charlm | package.module:attr | an entry point
    dataset: str = "breast_cancer"  # breast_cancer | digits | wine | iris | mnist | path to a LIBSVM file;
                                    # charlm: shakespeare
    partition: str = "dirichlet"    # iid | dirichlet | classes
    alpha: float = 0.5              # Dirichlet concentration (partition=dirichlet)
    classes_per_agent: int = 2      # partition=classes
    batch_size: int = 0             # 0: full local batch (distributed gradient descent)
    hidden: int = 64                # mlp width
    test_fraction: float = 0.2      # held-out share of the data
    dim: int = 50                   # linreg: number of features
    samples_per_agent: int = 100    # linreg; charlm: training samples per client (role)
    heterogeneity: float = 1.0      # linreg: spread of the agents' local optima
    noise: float = 0.1              # linreg: label noise
    l2: float = 0.0                 # L2 regularisation in the training loss
    device: str = "cpu"             # cpu | cuda | auto (cuda if torch finds a GPU, else cpu): model and data
    local_steps: int = 0            # federated rounds: local SGD steps per round (0: a gradient round)
    local_epochs: float = 0.0       # ... or passes over the local data (steps = ceil(epochs * size / batch))
    local_lr: float = 1.0           # the local steps' learning rate
    local_momentum: float = 0.0     # the local steps' heavy-ball momentum
    eval: str = "all"               # all | test: evaluation skips the training set (no train_loss/train_accuracy)
    params: dict = field(default_factory=dict)  # a plugin task's own parameters (built-ins take none)


@dataclass
class SchemeConfig:
    """The uplink algorithm and the codec it uses."""

    name: str = "tpc"    # temporal predictive coding ...
    codec: str = "qsgd"  # ... with a QSGD-compressed residual
    codec_params: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    granularity: str = "model"  # model | tensor: compress the flat gradient, or each parameter tensor on its own
    min_size: int = 0           # tensors with fewer elements are sent as fp32
    warmup_rounds: int = 0      # the first rounds are sent as fp32 (docs/schemes.md, "Per-tensor compression")
    ema: float = 0.0            # the agent sends a moving average of its gradients with this decay (0: the gradient)


@dataclass
class DownlinkConfig:
    """How the model goes down to the workers (psgrad/runtime/downlink.py)."""

    scheme: str = "direct"  # direct | ef21p (EF21-P: server-side error feedback) | any scheme name
    codec: str = "fp32"     # direct + fp32: the model's float32 bytes, as is
    codec_params: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)


@dataclass
class OptimConfig:
    """The server's optimizer and its learning-rate schedule (psgrad/runtime/optim.py)."""

    name: str = "sgd"           # sgd | fedavgm | fedadam | fedyogi | fedadagrad (Reddi et al., 2021)
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine | step
    step_every: int = 100       # schedule=step: rounds between decays
    step_gamma: float = 0.5     # schedule=step: decay factor
    beta1: float = 0.9          # fedadam, fedyogi, fedadagrad: first-moment decay
    beta2: float = 0.99         # fedadam, fedyogi: second-moment decay
    tau: float = 1e-3           # fedadam, fedyogi, fedadagrad: adaptivity (added to the root of the second moment)


@dataclass
class RunConfig:
    """Rounds, ranks, logging and outputs."""

    name: str = "default"
    seed: int = 0
    rounds: int = 200
    workers: int = 0             # 0: MPI world size - 1, or 8 with the local transport
    agents_per_worker: int = 1
    clients: int = 0             # agents in all, spread over the worker ranks (0: workers x agents_per_worker)
    clients_per_round: int = 0   # the cohort sampled each round (0: every agent, every round)
    sampling: str = "uniform"    # uniform | size (probability proportional to local data size)
    dropout: float = 0.0         # probability that a sampled client fails to report
    deadline: float = 0.0        # simulated seconds after which a client's report is dropped (0: none; needs a clock)
    absent: str = "skip"         # skip | stale: absent clients leave the aggregate, or enter it with their
                                 # server-side estimate (schemes that keep one: ef21, lag, diana)
    mirror_memory: float = 0.0   # MiB of agent states held in memory on each rank; the rest on disk (0: all)
    aggregate: str = "weighted"  # mean | weighted (by local data size)
    eval_every: int = 10
    log_every: int = 20
    digest_every: int = 10
    results_dir: str = "results"
    overwrite: bool = False      # a fresh run may replace the run already in its folder
    timeout: float = 120.0       # seconds to wait for any one message before failing the run
    checkpoint_every: int = 0    # rounds between checkpoints (0: only on SIGTERM); see docs/reliability.md
    bad_message: str = "stop"    # stop | drop: a corrupt or unexpected message ends the run, or is dropped
    nonfinite: str = "stop"      # stop | skip: a NaN/Inf local gradient ends the run, or the agent skips the round
    tensorboard: bool = False    # also write the per-round metrics as TensorBoard events (pip extra psgrad[tensorboard])
    reproducible: bool = False   # the same bits on any x86-64 CPU: torch's portable kernels (psgrad/reproducible.py)


@dataclass
class ClockConfig:
    """A simulated clock: per-client bandwidths and compute speed (FedScale's round-time model)."""

    uplink_mbps: float = 0.0    # median uplink bandwidth, Mbit/s (0 and no trace: no clock)
    downlink_mbps: float = 0.0  # median downlink bandwidth, Mbit/s (0: as the uplink)
    samples_per_s: float = 0.0  # median compute speed, training samples per second (0: compute takes no time)
    spread: float = 0.0         # sigma of each client's log-normal factor on the three medians (0: all alike)
    trace: str = ""             # CSV with a row per client: client,uplink_mbps,downlink_mbps,samples_per_s

    @property
    def enabled(self):
        return bool(self.trace) or self.uplink_mbps > 0


@dataclass
class Config:
    task: TaskConfig = field(default_factory=TaskConfig)
    scheme: SchemeConfig = field(default_factory=SchemeConfig)
    downlink: DownlinkConfig = field(default_factory=DownlinkConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)


SECTIONS = {f.name: f.type for f in fields(Config)}
_CHOICES = {
    ("task", "partition"): ("iid", "dirichlet", "classes"),
    ("task", "eval"): ("all", "test"),
    ("task", "device"): ("cpu", "cuda", "auto"),
    ("scheme", "granularity"): ("model", "tensor"),
    ("optim", "schedule"): ("constant", "cosine", "step"),
    ("run", "aggregate"): ("mean", "weighted"),
    ("run", "bad_message"): ("stop", "drop"),
    ("run", "nonfinite"): ("stop", "skip"),
    ("run", "sampling"): ("uniform", "size"),
    ("run", "absent"): ("skip", "stale"),
    ("optim", "name"): ("sgd", "fedavgm", "fedadam", "fedyogi", "fedadagrad"),
}
_POSITIVE = {("run", "rounds"), ("run", "agents_per_worker"), ("run", "eval_every"), ("run", "log_every"),
             ("run", "digest_every"), ("run", "timeout"), ("optim", "lr"), ("optim", "step_every"), ("task", "local_lr"), ("optim", "tau"),
             ("task", "alpha"), ("task", "classes_per_agent"), ("task", "hidden"), ("task", "dim"),
             ("task", "samples_per_agent")}
_NON_NEGATIVE = {("run", "workers"), ("task", "batch_size"), ("task", "noise"), ("task", "heterogeneity"),
                 ("task", "l2"), ("optim", "weight_decay"), ("run", "seed"),
                 ("run", "checkpoint_every"), ("scheme", "min_size"), ("scheme", "warmup_rounds"),
                 ("task", "local_steps"), ("task", "local_epochs"), ("run", "clients"), ("run", "clients_per_round"),
                 ("run", "deadline"), ("run", "mirror_memory"), ("clock", "uplink_mbps"), ("clock", "downlink_mbps"),
                 ("clock", "samples_per_s"), ("clock", "spread")}
_UNIT = {("optim", "momentum"), ("task", "test_fraction"), ("optim", "step_gamma"), ("task", "local_momentum"),
         ("run", "dropout"), ("optim", "beta1"), ("optim", "beta2"), ("scheme", "ema")}


def from_dict(data):
    """Build a validated ``Config`` from nested dicts; every error names the key and what was expected."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config must be a mapping of sections, got {type(data).__name__}")
    _check_keys("config", data, SECTIONS)
    sections = {}
    for name, cls in SECTIONS.items():
        values = data.get(name) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{name}: expected a mapping, got {type(values).__name__}")
        types = {f.name: f.type for f in fields(cls)}
        _check_keys(name, values, types)
        sections[name] = cls(**{k: _coerce(f"{name}.{k}", v, types[k]) for k, v in values.items()})
    cfg = Config(**sections)
    _validate(cfg)
    return cfg


def to_dict(cfg):
    return asdict(cfg)


def config_hash(cfg):
    """SHA-256 of the canonical JSON of the resolved config: equal on every rank or the run refuses to start."""
    return hashlib.sha256(json.dumps(to_dict(cfg), sort_keys=True).encode()).hexdigest()


class Loader(yaml.SafeLoader):
    """YAML's safe loader, with the numbers people write read as floats: ``1e-3``, ``1E-3``, ``5e+2``,
    ``1.0e6`` and ``-.5`` are strings under YAML 1.1's float rule (a dot, a signed exponent, no sign before
    a leading dot), floats here, as in YAML 1.2 and Python. Every YAML psgrad reads (config files, comparison files, ``--set``
    values) goes through it."""


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+|\.[0-9_]+)$"),
    list("-+0123456789."))


def load_yaml(text):
    """The value of YAML ``text`` under ``Loader``."""
    return yaml.load(text, Loader=Loader)


def read_yaml(path, what="config file"):
    """The mapping a YAML file holds; a missing file, bad YAML or a non-mapping is a ConfigError naming ``what``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        data = load_yaml(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping, got {type(data).__name__}")
    return data


def load(path=None, overrides=()):
    """Load ``path`` (YAML; None: every field's default), then apply ``a.b=value`` overrides."""
    return from_dict(apply_overrides({} if path is None else read_yaml(path), overrides))


def apply_overrides(data, overrides):
    """``data`` (nested dicts of a config) with every ``a.b=value`` of ``overrides`` applied in place."""
    for item in overrides:
        _apply_override(data, item)
    return data


def dump(cfg, path):
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def parse_override(item, form, example, min_parts=1):
    """``(key parts, value)`` of an override ``a.b.c=value``, the value read as YAML (as text where it is not
    YAML); ``ConfigError`` naming the expected ``form`` and an ``example`` when it is malformed."""
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) < min_parts or not all(parts):
        raise ConfigError(f"override {item!r} must look like {form} (e.g. {example})")
    try:
        return parts, load_yaml(raw)
    except yaml.YAMLError:
        return parts, raw


def _apply_override(data, item):
    parts, value = parse_override(item, "section.key=value", "run.rounds=50", min_parts=2)
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part} is not a section")
    node[parts[-1]] = value


def _check_keys(where, values, valid):
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ConfigError(f"{where}: unknown key {', '.join(map(str, unknown))}; valid: {', '.join(valid)}")


def _coerce(key, value, typ):
    typ = {"str": str, "int": int, "float": float, "bool": bool, "dict": dict}.get(typ, typ)
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: expected a finite float, got {value!r}")
    if typ is int and isinstance(value, float) and value.is_integer():
        return int(value)  # rounds=1e3 is a thousand rounds
    if typ is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if typ is dict and value is None:
        return {}
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {typ.__name__}, got {value!r} ({type(value).__name__})")
    return value


def _validate(cfg):
    for (section, key), choices in _CHOICES.items():
        v = getattr(getattr(cfg, section), key)
        if v not in choices:
            raise ConfigError(f"{section}.{key}: expected one of {', '.join(choices)}, got {v!r}")
    for (section, key) in _POSITIVE:
        v = getattr(getattr(cfg, section), key)
        if not v > 0:
            raise ConfigError(f"{section}.{key}: expected a value > 0, got {v!r}")
    for (section, key) in _NON_NEGATIVE:
        v = getattr(getattr(cfg, section), key)
        if not v >= 0:
            raise ConfigError(f"{section}.{key}: expected a value >= 0, got {v!r}")
    for (section, key) in _UNIT:
        v = getattr(getattr(cfg, section), key)
        if not 0 <= v < 1:
            raise ConfigError(f"{section}.{key}: expected a value in [0, 1), got {v!r}")
    if cfg.task.local_steps and cfg.task.local_epochs:
        raise ConfigError(f"task.local_steps={cfg.task.local_steps} and task.local_epochs={cfg.task.local_epochs}: "
                          f"set one of them")
    if cfg.run.deadline and not cfg.clock.enabled:
        raise ConfigError(f"run.deadline={cfg.run.deadline:g} needs a simulated clock: set clock.uplink_mbps "
                          f"or clock.trace")
    if cfg.run.clients and cfg.run.clients_per_round > cfg.run.clients:
        raise ConfigError(f"run.clients_per_round={cfg.run.clients_per_round} is more than the "
                          f"run.clients={cfg.run.clients} agents")
    if cfg.run.reproducible and cfg.task.device != "cpu":
        raise ConfigError(f"run.reproducible: true covers torch on the CPU only, got task.device={cfg.task.device!r}")
    if not cfg.run.name or "/" in cfg.run.name or cfg.run.name.startswith("."):
        raise ConfigError(f"run.name: expected a plain folder name, got {cfg.run.name!r}")
