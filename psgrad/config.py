"""Typed run configuration: dataclasses, YAML files and ``--set a.b=value`` overrides."""
from dataclasses import dataclass, field


@dataclass
class TaskConfig:
    """The learning problem and how its data is split among agents."""

    name: str = "logreg"            # linreg | logreg | mlp | cnn
    dataset: str = "breast_cancer"  # breast_cancer | digits | wine | iris | path to a LIBSVM file
    partition: str = "dirichlet"    # iid | dirichlet | classes
    alpha: float = 0.5              # Dirichlet concentration (partition=dirichlet)
    classes_per_agent: int = 2      # partition=classes
    batch_size: int = 0             # 0: full local batch (distributed gradient descent)
    hidden: int = 64                # mlp width
    test_fraction: float = 0.2      # held-out share of the data
    dim: int = 50                   # linreg: number of features
    samples_per_agent: int = 100    # linreg
    heterogeneity: float = 1.0      # linreg: spread of the agents' local optima
    noise: float = 0.1              # linreg: label noise
    l2: float = 0.0                 # L2 regularisation in the training loss


@dataclass
class SchemeConfig:
    """The uplink algorithm and the codec it uses."""

    name: str = "direct"
    codec: str = "fp32"
    codec_params: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)


@dataclass
class OptimConfig:
    """The server's optimizer: SGD with momentum and a learning-rate schedule."""

    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine | step
    step_every: int = 100       # schedule=step: rounds between decays
    step_gamma: float = 0.5     # schedule=step: decay factor


@dataclass
class RunConfig:
    """Rounds, ranks, logging and outputs."""

    name: str = "default"
    seed: int = 0
    rounds: int = 200
    workers: int = 0             # 0: MPI world size - 1, or 8 with the local transport
    agents_per_worker: int = 1
    aggregate: str = "weighted"  # mean | weighted (by local data size)
    eval_every: int = 10
    log_every: int = 20
    digest_every: int = 10
    results_dir: str = "results"
    timeout: float = 120.0       # seconds to wait for any one message before failing the run


@dataclass
class Config:
    task: TaskConfig = field(default_factory=TaskConfig)
    scheme: SchemeConfig = field(default_factory=SchemeConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
