"""TorchTask: any torch model and data as a task; its initial parameters, train and eval modes, BatchNorm
statistics, seeded forward randomness, devices, and bad input."""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import psgrad
from psgrad.config import TaskConfig, from_dict
from psgrad.errors import ConfigError
from psgrad.runtime.phases import Phases
from psgrad.tasks import Task, TorchTask, make_task
from psgrad.tasks.device import resolve_device

torch.set_num_threads(1)
N_AGENTS = 4
GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def blobs(n=360, p=6, classes=3, seed=0):
    """Gaussian blobs: float64 features [n, p], int64 labels [n]."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    centers = rng.normal(size=(classes, p)) * 2.0
    return centers[y] + rng.normal(size=(n, p)), y


(X, X_TEST), (Y, Y_TEST) = (np.split(a, [240]) for a in blobs())
PARTS = psgrad.partition("dirichlet", Y, N_AGENTS, seed=0, alpha=1.0)
SHARDS = [(X[i], Y[i]) for i in PARTS]


def mlp():
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def dropout_net():
    return nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))


def batchnorm_net():
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def make(model=mlp, loss="cross_entropy", **kwargs):
    kwargs.setdefault("test", (X_TEST, Y_TEST))
    return TorchTask(model, loss, SHARDS, **kwargs)


def point(task, seed=1):
    rng = np.random.default_rng(seed)
    return (task.init_params() + 0.1 * rng.normal(size=task.d)).astype(np.float32)


def reference(task, agent, w, train=True):
    """The agent's loss and gradient through functional_call on a fresh copy of the parameters."""
    x, y = task.local_data(agent)
    params, offset = {}, 0
    for name, shape in task.flat.shapes:
        n = math.prod(shape)
        params[name] = torch.tensor(w[offset:offset + n]).view(shape).requires_grad_(True)
        offset += n
    task.module.train(train)
    loss = task.objective.loss(functional_call(task.module, params, (x,)), y)
    grads = torch.autograd.grad(loss, list(params.values()))
    return float(loss.detach()), torch.cat([g.reshape(-1) for g in grads]).numpy()


# Building a task ----------------------------------------------------------------------------------

def test_a_torch_task_from_a_factory_and_numpy_shards_trains_by_gradient_descent():
    task = make(batch_size=0)
    assert isinstance(task, Task) and task.n_agents == N_AGENTS and task.d == 6 * 16 + 16 + 16 * 3 + 3
    assert task.metric_names == ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
    w = task.init_params()
    weights = (task.agent_sizes / task.agent_sizes.sum()).astype(np.float32)
    first = task.evaluate(w)
    for t in range(40):
        w = w - np.float32(0.5) * sum(p * task.local_grad(a, w, t)[1] for a, p in enumerate(weights))
    last = task.evaluate(w)
    assert last["train_loss"] < 0.5 * first["train_loss"] and last["test_accuracy"] > 0.9


def test_local_gradient_is_the_autograd_gradient_of_the_mean_loss_on_the_shard():
    task = make()
    w = point(task)
    for agent in range(N_AGENTS):
        loss, grad = task.local_grad(agent, w, 0)
        ref_loss, ref_grad = reference(task, agent, w)
        assert loss == pytest.approx(ref_loss, rel=1e-6)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-7)


def test_shards_as_a_function_of_the_agent_or_as_torch_tensors_give_the_same_task():
    listed = make()
    by_function = TorchTask(mlp, "cross_entropy", lambda a: SHARDS[a], test=(X_TEST, Y_TEST), n_agents=N_AGENTS)
    as_torch = TorchTask(mlp, "cross_entropy", [(torch.tensor(x), torch.tensor(y)) for x, y in SHARDS],
                         test=(torch.tensor(X_TEST), torch.tensor(Y_TEST)))
    w = point(listed)
    for other in (by_function, as_torch):
        assert other.init_params().tobytes() == listed.init_params().tobytes()
        for agent in range(N_AGENTS):
            assert other.local_grad(agent, w, 2)[1].tobytes() == listed.local_grad(agent, w, 2)[1].tobytes()
        assert other.evaluate(w) == listed.evaluate(w)


def test_partition_helpers_work_on_a_users_own_labels_of_any_type():
    labels = np.array(["cat", "dog", "bird"] * 20)
    for name, params in [("iid", {}), ("dirichlet", {"alpha": 0.3}), ("classes", {"classes_per_agent": 1})]:
        parts = psgrad.partition(name, labels, 3, seed=0, **params)
        np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(60))
        as_torch = psgrad.partition(name, torch.tensor(np.unique(labels, return_inverse=True)[1]), 3, seed=0,
                                    **params)
        assert [len(p) for p in as_torch] == [len(p) for p in parts]
    assert [len(np.unique(labels[p])) for p in psgrad.partition("classes", labels, 3, 0, classes_per_agent=1)] \
        == [1, 1, 1]
    with pytest.raises(ConfigError, match="one label per sample"):
        psgrad.partition("iid", np.zeros((10, 2)), 2, seed=0)


def test_named_losses_mse_and_bce_and_a_callable_loss_with_an_extra_metric():
    target = X[:, 0] - X[:, 1]
    regression = [(X[i], target[i]) for i in PARTS]
    linear = lambda: nn.Linear(6, 1)  # noqa: E731
    mse = TorchTask(linear, "mse", regression)
    w = point(mse)
    x, y = mse.local_data(1)
    weight, bias = torch.tensor(w[:6]), torch.tensor(w[6:])
    expected = float(torch.mean((x @ weight + bias - y) ** 2))
    assert mse.local_grad(1, w, 0)[0] == pytest.approx(expected, rel=1e-6)
    assert mse.metric_names == ("train_loss",)

    binary = [(X[i], (Y[i] == 0).astype(np.float64)) for i in PARTS]
    bce = TorchTask(linear, "bce", binary, test=(X_TEST, (Y_TEST == 0).astype(np.float64)))
    x, y = bce.local_data(2)
    logits = x @ weight + bias
    assert bce.local_grad(2, w, 0)[0] == pytest.approx(float(F.binary_cross_entropy_with_logits(logits, y)), rel=1e-6)
    accuracy = float(((torch.tensor(X_TEST, dtype=torch.float32) @ weight + bias > 0).double()
                      == torch.tensor(Y_TEST == 0).double()).double().mean())
    assert bce.evaluate(w)["test_accuracy"] == pytest.approx(accuracy)

    def huber(out, y):
        return F.huber_loss(out[:, 0], y)

    mae = {"mae": lambda out, y: float((out[:, 0] - y).abs().mean())}
    custom = TorchTask(linear, huber, regression, test=(X_TEST, X_TEST[:, 0] - X_TEST[:, 1]), metrics=mae)
    assert custom.metric_names == ("train_loss", "test_loss", "test_mae")
    x, y = custom.local_data(0)
    assert custom.local_grad(0, w, 0)[0] == pytest.approx(float(F.huber_loss(x @ weight + bias, y)), rel=1e-6)
    xt = torch.tensor(X_TEST, dtype=torch.float32)
    yt = torch.tensor(X_TEST[:, 0] - X_TEST[:, 1], dtype=torch.float32)
    assert custom.evaluate(w)["test_mae"] == pytest.approx(float((xt @ weight + bias - yt).abs().mean()), rel=1e-6)


def test_integer_features_reach_the_model_as_int64_for_an_embedding():
    tokens = np.random.default_rng(0).integers(0, 10, size=(80, 5))
    labels = (tokens.sum(axis=1) > 22).astype(np.int64)
    model = lambda: nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(20, 2))  # noqa: E731
    task = TorchTask(model, "cross_entropy", [(tokens[a::2], labels[a::2]) for a in range(2)])
    assert task.local_data(0)[0].dtype == torch.int64
    loss, grad = task.local_grad(0, task.init_params(), 0)
    assert np.isfinite(loss) and np.any(grad[:40] != 0)


def test_tied_weights_are_one_slice_of_the_flat_vector_shared_by_both_layers():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.encode = nn.Linear(6, 6, bias=False)
            self.decode = nn.Linear(6, 6, bias=False)
            self.decode.weight = self.encode.weight
            self.head = nn.Linear(6, 3)

        def forward(self, x):
            return self.head(torch.relu(self.decode(torch.relu(self.encode(x)))))

    task = make(Tied)
    assert task.d == 36 + 18 + 3
    assert task.module.encode.weight is task.module.decode.weight
    w = point(task)
    _, grad = task.local_grad(0, w, 0)
    np.testing.assert_allclose(grad, reference(task, 0, w)[1], rtol=1e-5, atol=1e-7)


# Initial parameters -------------------------------------------------------------------------------

def test_a_factory_is_built_from_the_seed_whatever_the_global_generator_state():
    a = make(seed=3)
    torch.manual_seed(12345)
    torch.rand(100)
    b = make(seed=3)
    assert a.init_params().tobytes() == b.init_params().tobytes() and a.init_digest() == b.init_digest()
    c = make(seed=4)
    assert not np.array_equal(a.init_params(), c.init_params()) and a.init_digest() != c.init_digest()
    state = torch.get_rng_state()
    make(seed=3)
    assert torch.equal(state, torch.get_rng_state())  # building left the global generator as it was


def test_a_module_instance_keeps_its_own_parameters_as_the_start():
    module = mlp()
    given = torch.cat([p.detach().reshape(-1) for p in module.parameters()]).numpy().copy()
    task = make(module)
    np.testing.assert_array_equal(task.init_params(), given)
    assert len(task.init_digest()) == 64 and int(task.init_digest(), 16) >= 0
    other = make(mlp())  # built from the global generator: another start, another digest
    assert other.init_digest() != task.init_digest()
    zeros = make(mlp(), init="zeros")
    assert not np.any(zeros.init_params())
    uniform_a, uniform_b = make(mlp(), init="uniform", seed=5), make(mlp(), init="uniform", seed=5)
    assert uniform_a.init_params().tobytes() == uniform_b.init_params().tobytes()
    assert uniform_a.init_digest() == uniform_b.init_digest()


def test_init_digest_covers_the_buffers_as_built():
    a, b = batchnorm_net(), batchnorm_net()
    b.load_state_dict(a.state_dict())
    b[1].running_mean.fill_(0.5)
    assert make(a).init_digest() != make(b).init_digest()


# Train and eval modes, forward randomness -----------------------------------------------------------

def test_evaluate_runs_in_eval_mode_so_dropout_is_off_and_two_evaluations_agree():
    task = make(dropout_net)
    w = point(task)
    first = task.evaluate(w)
    task.local_grad(0, w, 0)
    assert task.evaluate(w) == first
    module = dropout_net()
    torch.nn.utils.vector_to_parameters(torch.tensor(w), module.parameters())
    module.eval()
    with torch.no_grad():
        expected = float(F.cross_entropy(module(torch.tensor(X_TEST, dtype=torch.float32)), torch.tensor(Y_TEST)))
    assert first["test_loss"] == pytest.approx(expected, rel=1e-6)


def test_local_grad_runs_in_train_mode_with_dropout_masks_keyed_by_seed_agent_and_round():
    a = make(dropout_net)
    w = point(a)
    la, ga = a.local_grad(1, w, 7)
    torch.manual_seed(999)
    torch.rand(1000)
    b = make(dropout_net)
    state = torch.get_rng_state()
    lb, gb = b.local_grad(1, w, 7)
    assert torch.equal(state, torch.get_rng_state())  # the global generator is left as it was
    assert la == lb and ga.tobytes() == gb.tobytes()
    assert not np.array_equal(ga, b.local_grad(1, w, 8)[1])   # another round: other masks
    assert not np.array_equal(ga, make(dropout_net, seed=1).local_grad(1, w, 7)[1])  # another seed
    eval_mode = reference(a, 1, w, train=False)[1]
    assert not np.allclose(ga, eval_mode)  # dropout was on


def _dropout_digest():
    task = make(dropout_net, batch_size=8)
    w = point(task)
    return "".join(task.local_grad(a, w, 3)[1].tobytes().hex()[:64] for a in range(N_AGENTS))


def test_dropout_gradients_are_bit_identical_in_another_process():
    code = ("import torch; torch.set_num_threads(1); torch.manual_seed(42); "
            "import tests.unit.test_torch_task as t; print(t._dropout_digest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == _dropout_digest()


# BatchNorm ------------------------------------------------------------------------------------------

def test_batchnorm_statistics_are_not_part_of_the_flat_vector():
    task = make(batchnorm_net)
    assert task.d == sum(p.numel() for p in task.module.parameters()) == 6 * 16 + 16 + 32 + 16 * 3 + 3


def test_batchnorm_local_grad_normalizes_with_the_batch_statistics():
    task = make(batchnorm_net, batch_size=10)
    w = point(task)
    loss, grad = task.local_grad(2, w, 4)
    x, y = task.local_data(2)
    idx = torch.from_numpy(task.batch(2, 4))
    h = x[idx] @ torch.tensor(w[:96]).view(16, 6).T + torch.tensor(w[96:112])
    h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + 1e-5) * torch.tensor(w[112:128]) \
        + torch.tensor(w[128:144])
    out = torch.relu(h) @ torch.tensor(w[144:192]).view(3, 16).T + torch.tensor(w[192:])
    assert loss == pytest.approx(float(F.cross_entropy(out, y[idx])), rel=1e-5)


def test_batchnorm_evaluation_uses_the_training_set_statistics_at_the_evaluated_parameters():
    task = make(batchnorm_net)
    w = point(task)
    first = task.evaluate(w)
    for t in range(3):
        task.local_grad(t % N_AGENTS, point(task, seed=t + 5), t)  # training forwards move running stats
    assert task.evaluate(w) == first == make(batchnorm_net).evaluate(w)  # a server that never trained agrees
    bn = task.module[1]
    x = torch.tensor(np.concatenate([s[0] for s in SHARDS]), dtype=torch.float32)
    h = x @ torch.tensor(w[:96]).view(16, 6).T + torch.tensor(w[96:112])
    np.testing.assert_allclose(bn.running_mean.numpy(), h.mean(0).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), h.var(0, unbiased=True).numpy(), rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.1 and not bn.training


# Devices and timing ---------------------------------------------------------------------------------

def test_cpu_and_auto_devices_work_here_and_give_the_same_bits():
    cpu, auto = make(device="cpu"), make(device="auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert cpu.device == torch.device("cpu") and auto.device.type == expected
    if expected == "cpu":
        w = point(cpu)
        assert cpu.local_grad(0, w, 0)[1].tobytes() == auto.local_grad(0, w, 0)[1].tobytes()
        assert cpu.determinism_warnings() == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_one_line_config_error():
    for ask in (lambda: make(device="cuda"),
                lambda: make_task(TaskConfig(name="logreg", device="cuda"), 2, seed=0)):
        with pytest.raises(ConfigError, match="no CUDA GPU") as info:
            ask()
        assert "\n" not in str(info.value)
    assert make_task(TaskConfig(name="logreg", device="auto"), 2, seed=0).device == torch.device("cpu")


def test_task_device_in_the_config_accepts_cpu_cuda_and_auto_only():
    for device in ("cpu", "cuda", "auto"):
        assert from_dict({"task": {"device": device}}).task.device == device
    with pytest.raises(ConfigError, match="task.device: expected one of cpu, cuda, auto"):
        from_dict({"task": {"device": "gpu"}})
    with pytest.raises(ConfigError, match="cpu, cuda, cuda:N or auto"):
        resolve_device("tpu")


def test_local_grad_times_compute_and_copy_as_phases_and_reuses_its_host_buffer():
    task = make()
    w = point(task)
    phases = Phases()
    loss, g = task.local_grad(0, w, 0, out=task.grad_buffer, phases=phases)
    phases.close_round()
    assert g is task.grad_buffer and {"compute", "copy"} <= set(phases.rounds[0])
    out = np.empty(task.d, np.float32)
    assert task.local_grad(0, w, 0, out=out)[1] is out
    fresh = task.local_grad(0, w, 0)[1]
    assert fresh is not task.grad_buffer
    assert out.tobytes() == fresh.tobytes() == g.tobytes()


@GPU
def test_on_a_gpu_gradients_and_evaluations_match_the_cpu_and_reach_a_pinned_host_buffer():
    for model in (mlp, dropout_net, batchnorm_net):
        cpu, gpu = make(model, batch_size=16), make(model, batch_size=16, device="cuda")
        assert gpu.init_params().tobytes() == cpu.init_params().tobytes()
        assert gpu.init_digest() == cpu.init_digest()
        assert gpu._pinned.is_pinned() and gpu.grad_buffer.ctypes.data == gpu._pinned.data_ptr()
        w = point(cpu)
        for agent in range(N_AGENTS):
            lc, gc = cpu.local_grad(agent, w, 1)
            phases = Phases()
            lg, gg = gpu.local_grad(agent, w, 1, out=gpu.grad_buffer, phases=phases)
            phases.close_round()
            assert {"compute", "copy"} <= set(phases.rounds[0])
            if model is not dropout_net:  # dropout masks come from the GPU's generator, another stream
                assert lg == pytest.approx(lc, rel=1e-4)
                np.testing.assert_allclose(gg, gc, rtol=1e-3, atol=1e-5)
            again, _ = make(model, batch_size=16, device="cuda").local_grad(agent, w, 1)
            assert again == pytest.approx(lg, rel=1e-6)  # dropout masks too are a function of (seed, agent, round)
        assert bool(gpu.determinism_warnings()) == (not torch.are_deterministic_algorithms_enabled())
        ec, eg = cpu.evaluate(w), gpu.evaluate(w)
        assert eg == gpu.evaluate(w)
        for k in ec:
            assert eg[k] == pytest.approx(ec[k], rel=1e-4, abs=1e-6)
    built_in = make_task(TaskConfig(name="cnn", dataset="digits", device="cuda"), 2, seed=0)
    reference_task = make_task(TaskConfig(name="cnn", dataset="digits"), 2, seed=0)
    assert built_in.init_params().tobytes() == reference_task.init_params().tobytes()
    np.testing.assert_allclose(built_in.local_grad(0, built_in.init_params(), 0)[1],
                               reference_task.local_grad(0, reference_task.init_params(), 0)[1], rtol=1e-3, atol=1e-6)


# Bad input -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("build,message", [
    (lambda: make(loss="hinge"), "unknown loss 'hinge'; valid: bce, cross_entropy, mse"),
    (lambda: make(loss=3), "loss must be a name or a callable"),
    (lambda: make(model=42), "model must be an nn.Module"),
    (lambda: make(model=lambda: "net"), "factory must return an nn.Module"),
    (lambda: make(model=nn.ReLU), "has no parameters"),
    (lambda: TorchTask(mlp, "cross_entropy", lambda a: SHARDS[a]), "need n_agents >= 1"),
    (lambda: TorchTask(mlp, "cross_entropy", SHARDS, n_agents=3), "n_agents=3 but 4 shards"),
    (lambda: TorchTask(mlp, "cross_entropy", []), "at least one agent"),
    (lambda: TorchTask(mlp, "cross_entropy", [X]), "must be a pair"),
    (lambda: TorchTask(mlp, "cross_entropy", [(X, Y[:5])]), "240 features and 5 targets"),
    (lambda: TorchTask(mlp, "cross_entropy", [(X, Y), (X[:, :3], Y)]), "same shape per sample"),
    (lambda: make(init="normal"), "init must be one of module, uniform, zeros"),
    (lambda: make(batch_size=-1), "batch_size must be >= 0"),
    (lambda: make(l2=-1.0), "l2 must be >= 0"),
    (lambda: make(test=None, metrics={"f1": len}), "held-out data, but test is None"),
    (lambda: make(metrics={"accuracy": len}), "named other than loss and accuracy"),
    (lambda: make(device="gpu"), "cpu, cuda, cuda:N or auto"),
])
def test_bad_torch_task_input_is_a_one_line_config_error(build, message):
    with pytest.raises(ConfigError, match=message) as info:
        build()
    assert "\n" not in str(info.value)


def test_init_module_on_a_meta_module_is_a_config_error():
    with torch.device("meta"):
        module = mlp()
    with pytest.raises(ConfigError, match="meta device"):
        make(module)
