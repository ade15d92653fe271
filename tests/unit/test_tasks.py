"""Tasks: gradients against float64 autograd and finite differences, determinism, partitions,
minibatches, the exact linreg optimum, and gradient descent making progress on every task."""
import hashlib
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.func import functional_call

from psgrad.config import TaskConfig
from psgrad.errors import ConfigError
from psgrad.tasks import TASKS, make_task
from psgrad.tasks.data import load, split
from psgrad.tasks.partition import partition
from psgrad.tasks.seeding import minibatch

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def svm_file(tmp_path_factory):
    """A small LIBSVM file with labels -1/+1 (iris, setosa against the rest)."""
    from sklearn.datasets import dump_svmlight_file, load_iris

    x, y = load_iris(return_X_y=True)
    path = tmp_path_factory.mktemp("svm") / "iris.svm"
    dump_svmlight_file(x, np.where(y == 0, -1, 1), str(path))
    return str(path)


CONFIGS = {
    "linreg": TaskConfig(name="linreg", dim=12, samples_per_agent=30),
    "linreg_l2": TaskConfig(name="linreg", dim=12, samples_per_agent=30, l2=0.1, heterogeneity=2.0),
    "linreg_diabetes": TaskConfig(name="linreg", dataset="diabetes", partition="iid"),
    "logreg_breast_cancer": TaskConfig(name="logreg", dataset="breast_cancer"),
    "logreg_digits": TaskConfig(name="logreg", dataset="digits", l2=0.01),
    "logreg_wine": TaskConfig(name="logreg", dataset="wine", partition="iid"),
    "logreg_iris": TaskConfig(name="logreg", dataset="iris", partition="classes", classes_per_agent=1),
    "mlp_digits": TaskConfig(name="mlp", dataset="digits", hidden=16),
    "mlp_breast_cancer": TaskConfig(name="mlp", dataset="breast_cancer", hidden=8, l2=0.01),
    "cnn_digits": TaskConfig(name="cnn", dataset="digits", partition="iid"),
}
N_AGENTS = 4


def build(key, svm_file=None, **changes):
    cfg = CONFIGS[key] if key != "svm" else TaskConfig(name="logreg", dataset=svm_file, partition="iid")
    return make_task(replace(cfg, **changes), N_AGENTS, seed=7)


def point(task, seed=1, scale=0.3):
    """A generic point: the initial parameters plus a random perturbation."""
    rng = np.random.default_rng(seed)
    return (task.init_params() + scale * rng.normal(size=task.d) / math.sqrt(task.d) * 10).astype(np.float32)


def reference64(task, agent, w, idx=None):
    """The agent's objective in float64 via functional_call + autograd: (loss, grad) as numpy float64."""
    x, y = task.local_data(agent)
    if idx is not None:
        x, y = x[torch.from_numpy(idx)], y[torch.from_numpy(idx)]
    x = x.double()
    y = y.double() if y.is_floating_point() else y
    params, offset = {}, 0
    for name, shape in task.flat.shapes:
        n = math.prod(shape)
        params[name] = torch.tensor(np.asarray(w[offset:offset + n], dtype=np.float64)).view(shape)
        params[name].requires_grad_(True)
        offset += n
    loss = task.objective.loss(functional_call(task.module, params, (x,)), y)
    loss = loss + 0.5 * task.l2 * sum((p * p).sum() for p in params.values())
    grads = torch.autograd.grad(loss, list(params.values()))
    return float(loss.detach()), torch.cat([g.reshape(-1) for g in grads]).numpy()


ALL = list(CONFIGS) + ["svm"]


@pytest.mark.parametrize("key", ALL)
def test_local_gradient_matches_float64_autograd_and_finite_differences(key, svm_file):
    task = build(key, svm_file)
    w = point(task)
    for agent in (0, N_AGENTS - 1):
        loss, grad = task.local_grad(agent, w, 0)
        assert grad.dtype == np.float32 and grad.shape == (task.d,)
        ref_loss, ref_grad = reference64(task, agent, w)
        assert loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-6)
        assert np.linalg.norm(grad - ref_grad) <= 1e-4 * np.linalg.norm(ref_grad) + 1e-6
        # Central differences of the float64 objective along random directions.
        rng = np.random.default_rng(agent)
        for _ in range(3):
            v = rng.normal(size=task.d)
            v /= np.linalg.norm(v)
            h = 1e-6
            fd = (reference64(task, agent, w + h * v)[0] - reference64(task, agent, w - h * v)[0]) / (2 * h)
            assert fd == pytest.approx(float(ref_grad @ v), rel=1e-4, abs=1e-7)


def test_linreg_gradient_is_the_closed_form_least_squares_gradient():
    task = build("linreg_l2")
    w = point(task)
    x, y = (t.numpy().astype(np.float64) for t in task.local_data(2))
    expected = x.T @ (x @ w - y) / len(y) + task.l2 * w
    loss, grad = task.local_grad(2, w, 0)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)
    r = x @ w - y
    assert loss == pytest.approx(0.5 * r @ r / len(y) + 0.5 * task.l2 * w @ w, rel=1e-5)


@pytest.mark.parametrize("key", ["logreg_digits", "mlp_breast_cancer", "linreg_l2"])
def test_training_objective_is_the_size_weighted_mean_of_local_objectives(key):
    task = build(key)
    w = point(task)
    weights = task.agent_sizes / task.agent_sizes.sum()
    results = [task.local_grad(a, w, 0) for a in range(N_AGENTS)]
    weighted = sum(p * loss for p, (loss, _) in zip(weights, results))
    assert task.evaluate(w)["train_loss"] == pytest.approx(weighted, rel=1e-5)


@pytest.mark.parametrize("key", ALL)
def test_two_builds_give_bit_identical_parameters_and_gradients(key, svm_file):
    a, b = build(key, svm_file), build(key, svm_file)
    assert a.d == b.d and np.array_equal(a.agent_sizes, b.agent_sizes)
    assert a.init_params().tobytes() == b.init_params().tobytes()
    w = point(a)
    for agent in range(N_AGENTS):
        la, ga = a.local_grad(agent, w, 3)
        lb, gb = b.local_grad(agent, w, 3)
        assert la == lb and ga.tobytes() == gb.tobytes()
    assert a.evaluate(w) == b.evaluate(w)


def _grad_digest(key):
    task = build(key)
    h = hashlib.sha256()
    for agent in range(N_AGENTS):
        loss, grad = task.local_grad(agent, point(task), 5)
        h.update(np.float64(loss).tobytes() + grad.tobytes())
    return h.hexdigest()


def test_gradients_are_bit_identical_in_another_process():
    keys = ["cnn_digits", "mlp_digits", "linreg"]
    code = ("import torch; torch.set_num_threads(1); import tests.unit.test_tasks as t; "
            f"print(' '.join(t._grad_digest(k) for k in {keys!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.split() == [_grad_digest(k) for k in keys]


def test_init_params_returns_a_fresh_copy_and_depends_on_the_seed():
    task = build("mlp_digits")
    w = task.init_params()
    w[:] = 0
    assert np.any(task.init_params() != 0)
    other = make_task(CONFIGS["mlp_digits"], N_AGENTS, seed=8)
    assert not np.array_equal(task.init_params(), other.init_params())
    assert task.init_params().dtype == np.float32


def test_module_parameters_and_gradients_are_views_of_the_flat_buffers():
    task = build("cnn_digits")
    w = point(task)
    _, grad = task.local_grad(0, w, 0)
    lo, hi = task.flat.params.data_ptr(), task.flat.params.data_ptr() + 4 * task.d
    glo = task.flat.grad.data_ptr()
    offset = 0
    for p in task.module.parameters():
        assert p.data_ptr() == lo + 4 * offset and p.grad.data_ptr() == glo + 4 * offset
        offset += p.numel()
    assert offset == task.d and hi == lo + 4 * offset
    np.testing.assert_array_equal(task.flat.grad.numpy(), grad)


# Partitions ---------------------------------------------------------------------------------------

LABELS = np.repeat(np.arange(10), 50)


def _class_share(parts):
    """Mean over agents of the share of the agent's most frequent class."""
    return np.mean([np.bincount(LABELS[p]).max() / len(p) for p in parts])


@pytest.mark.parametrize("name,params", [("iid", {}), ("dirichlet", {"alpha": 0.1}), ("dirichlet", {"alpha": 10.0}),
                                         ("classes", {"classes_per_agent": 2}),
                                         ("classes", {"classes_per_agent": 3})])
def test_partitions_cover_every_sample_exactly_once_and_are_deterministic(name, params):
    parts = partition(name, LABELS, 7, seed=3, **params)
    assert len(parts) == 7 and all(len(p) >= 1 for p in parts)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(LABELS)))
    again = partition(name, LABELS, 7, seed=3, **params)
    assert all(np.array_equal(p, q) for p, q in zip(parts, again))
    other = partition(name, LABELS, 7, seed=4, **params)
    assert not all(np.array_equal(p, q) for p, q in zip(parts, other))


def test_iid_partition_sizes_differ_by_at_most_one():
    sizes = [len(p) for p in partition("iid", LABELS, 7, seed=0)]
    assert max(sizes) - min(sizes) <= 1


def test_dirichlet_with_small_alpha_is_skewed_and_with_large_alpha_is_near_uniform():
    skewed = _class_share(partition("dirichlet", LABELS, 10, seed=0, alpha=0.05))
    uniform = _class_share(partition("dirichlet", LABELS, 10, seed=0, alpha=100.0))
    assert skewed > 0.7 and uniform < 0.3


def test_dirichlet_gives_every_agent_a_sample_even_when_alpha_is_tiny():
    labels = np.repeat(np.arange(3), 20)
    parts = partition("dirichlet", labels, 40, seed=1, alpha=0.001)
    assert all(len(p) >= 1 for p in parts)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(60))


@pytest.mark.parametrize("k,n_agents", [(1, 10), (2, 6), (5, 6), (3, 25)])
def test_classes_partition_gives_each_agent_exactly_k_classes(k, n_agents):
    parts = partition("classes", LABELS, n_agents, seed=2, classes_per_agent=k)
    assert [len(np.unique(LABELS[p])) for p in parts] == [k] * n_agents


def test_bad_partition_settings_are_config_errors_that_say_why():
    with pytest.raises(ConfigError, match="classes_per_agent must be in \\[1, 10\\]"):
        partition("classes", LABELS, 6, seed=0, classes_per_agent=11)
    with pytest.raises(ConfigError, match="unused"):
        partition("classes", LABELS, 3, seed=0, classes_per_agent=2)
    with pytest.raises(ConfigError, match="valid: classes, dirichlet, iid"):
        partition("shards", LABELS, 3, seed=0)
    with pytest.raises(ConfigError, match="alpha"):
        partition("dirichlet", LABELS, 3, seed=0, alpha=0.0)
    with pytest.raises(ConfigError, match="cannot give each"):
        partition("iid", LABELS[:5], 6, seed=0)


def test_train_test_split_is_stratified_and_standardized_by_training_statistics():
    data = load("digits")
    parts = split(data, 0.2, seed=0)
    for c in range(10):
        assert np.sum(parts.y_test == c) == round(0.2 * np.sum(data.y == c))
    assert len(parts.y_train) + len(parts.y_test) == len(data.y)
    assert np.allclose(parts.x_train.mean(axis=0), 0, atol=1e-5)
    std = parts.x_train.std(axis=0)
    assert np.allclose(std[std > 0], 1, atol=1e-4)


# Minibatches --------------------------------------------------------------------------------------

def test_minibatch_indices_are_distinct_sorted_and_a_function_of_seed_agent_round():
    idx = minibatch(0, 2, 5, 100, 10)
    assert len(idx) == 10 and len(np.unique(idx)) == 10 and np.all(np.diff(idx) > 0)
    assert idx.min() >= 0 and idx.max() < 100
    assert np.array_equal(idx, minibatch(0, 2, 5, 100, 10))
    assert not np.array_equal(idx, minibatch(0, 2, 6, 100, 10))
    assert not np.array_equal(idx, minibatch(0, 3, 5, 100, 10))
    assert not np.array_equal(idx, minibatch(1, 2, 5, 100, 10))
    np.testing.assert_array_equal(minibatch(0, 2, 5, 8, 10), np.arange(8))
    np.testing.assert_array_equal(minibatch(0, 2, 5, 8, 0), np.arange(8))


def test_minibatch_picks_every_index_equally_often():
    n, b, rounds = 20, 5, 2000
    counts = np.bincount(np.concatenate([minibatch(4, 0, t, n, b) for t in range(rounds)]), minlength=n)
    expected = rounds * b / n  # 500; binomial std about 19, so 6 std of slack
    assert np.all(np.abs(counts - expected) < 120)


@pytest.mark.parametrize("key", ["logreg_digits", "mlp_digits", "cnn_digits", "linreg"])
def test_minibatch_gradients_are_deterministic_by_round_and_differ_between_rounds(key):
    task, twin = build(key, batch_size=16), build(key, batch_size=16)
    w = point(task)
    l0, g0 = task.local_grad(1, w, 0)
    l0b, g0b = task.local_grad(agent=1, params=w, round=0)
    lt, gt = twin.local_grad(1, w, 0)
    assert g0.tobytes() == g0b.tobytes() == gt.tobytes() and l0 == l0b == lt
    l1, g1 = task.local_grad(1, w, 1)
    assert not np.array_equal(g0, g1)
    idx = task.batch(1, 0)
    assert len(idx) == 16
    ref_loss, ref_grad = reference64(task, 1, w, idx)
    assert l0 == pytest.approx(ref_loss, rel=1e-5)
    assert np.linalg.norm(g0 - ref_grad) <= 1e-4 * np.linalg.norm(ref_grad)


def test_local_grad_writes_into_out_when_given():
    task = build("logreg_digits")
    out = np.empty(task.d, dtype=np.float32)
    _, g = task.local_grad(0, point(task), 0, out=out)
    assert g is out
    np.testing.assert_array_equal(out, task.local_grad(0, point(task), 0)[1])


# linreg's optimum ---------------------------------------------------------------------------------

@pytest.mark.parametrize("changes", [{}, {"l2": 0.05}, {"dim": 60, "samples_per_agent": 10},
                                     {"heterogeneity": 0.0}])
def test_linreg_f_star_is_the_minimum_of_the_training_objective(changes):
    task = build("linreg", **changes)
    x, y = task._x64, task._y64
    full_grad = x.T @ (x @ task.x_star - y) / len(y) + task.l2 * task.x_star
    assert np.linalg.norm(full_grad) < 1e-10
    rng = np.random.default_rng(0)
    for eps in (1e-3, 1e-1, 1.0):
        for _ in range(5):
            v = rng.normal(size=task.d)
            assert task.objective64(task.x_star + eps * v / np.linalg.norm(v)) >= task.f_star - 1e-12
    at_star = task.evaluate(task.x_star.astype(np.float32))
    assert -1e-12 <= at_star["suboptimality"] < 1e-8
    assert task.evaluate(task.init_params())["suboptimality"] > 1e-3


def test_linreg_on_a_libsvm_regression_file_has_an_exact_optimum(tmp_path):
    from sklearn.datasets import dump_svmlight_file, load_diabetes

    x, y = load_diabetes(return_X_y=True)
    path = tmp_path / "diabetes.svm"
    dump_svmlight_file(x[:200], y[:200], str(path))
    task = make_task(TaskConfig(name="linreg", dataset=str(path), partition="iid"), 3, seed=0)
    assert task.d == 10 and task.agent_sizes.sum() == 160
    grad = task._x64.T @ (task._x64 @ task.x_star - task._y64) / len(task._y64)
    assert np.linalg.norm(grad) < 1e-10
    assert task.evaluate(task.init_params())["suboptimality"] > 0.1


def test_linreg_suboptimality_is_strictly_positive_away_from_the_optimum():
    task = build("linreg")
    v = np.random.default_rng(1).normal(size=task.d)
    w = (task.x_star + 1e-2 * v).astype(np.float32)
    sub = task.evaluate(w)["suboptimality"]
    assert sub > 0 and sub == pytest.approx(task.objective64(w) - task.f_star)


def test_linreg_heterogeneity_spreads_the_local_optima():
    def spread(h):
        task = build("linreg", heterogeneity=h, noise=0.0)
        local = [np.linalg.lstsq(*(t.numpy().astype(np.float64) for t in task.local_data(a)), rcond=None)[0]
                 for a in range(N_AGENTS)]
        return np.mean([np.linalg.norm(o - task.x_star) for o in local])

    assert spread(0.0) < 1e-3 < 0.3 < spread(1.0)


# Training makes progress --------------------------------------------------------------------------

LR = {"linreg": 0.2, "linreg_l2": 0.1, "linreg_diabetes": 0.1, "cnn_digits": 0.5}


@pytest.mark.parametrize("key", ALL)
def test_gradient_descent_on_the_weighted_mean_of_local_gradients_reduces_the_loss(key, svm_file):
    task = build(key, svm_file)
    w = task.init_params()
    weights = (task.agent_sizes / task.agent_sizes.sum()).astype(np.float32)
    first = task.evaluate(w)
    for t in range(30):
        g = sum(p * task.local_grad(a, w, t)[1] for a, p in enumerate(weights))
        w = w - np.float32(LR.get(key, 0.5)) * g
    last = task.evaluate(w)
    assert last["train_loss"] < 0.7 * first["train_loss"]
    assert last["test_loss"] < first["test_loss"]
    if "test_accuracy" in task.metric_names:
        assert last["test_accuracy"] > first["test_accuracy"]
    if task.f_star is not None:
        assert last["suboptimality"] < 0.2 * first["suboptimality"]


def test_evaluate_returns_exactly_the_metric_names():
    for key in ("linreg", "logreg_iris"):
        task = build(key)
        assert tuple(task.evaluate(task.init_params())) == task.metric_names
    assert "suboptimality" in build("linreg").metric_names
    assert "test_accuracy" in build("logreg_iris").metric_names


def test_eval_test_skips_the_training_pass_and_keeps_the_held_out_metrics_exact():
    cfg = TaskConfig(name="logreg", dataset="digits", partition="iid", l2=0.01)
    full, held_out = make_task(cfg, 4, seed=3), make_task(replace(cfg, eval="test"), 4, seed=3)
    assert held_out.metric_names == ("test_loss", "test_accuracy")
    w = full.init_params() + np.float32(0.01) * np.arange(full.d, dtype=np.float32) % 7
    calls = []
    held_out.module.register_forward_hook(lambda m, inputs, out: calls.append(len(inputs[0])))
    metrics = held_out.evaluate(w)
    assert calls == [len(held_out._y_test)]  # one forward pass, over the held-out data only
    assert metrics == {k: v for k, v in full.evaluate(w).items() if k.startswith("test_")}
    with pytest.raises(ConfigError, match="task.eval=test evaluates on held-out data only.*test_fraction=0"):
        make_task(replace(cfg, eval="test", test_fraction=0.0), 4, seed=3)


# Errors -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg,message", [
    (TaskConfig(name="svm"), "unknown task 'svm'; known: charlm, cnn, linreg, logreg, mlp"),
    (TaskConfig(name="logreg", dataset="emnist"), "'emnist' is neither .*valid: breast_cancer, .*digits.*mnist.*LIBSVM"),
    (TaskConfig(name="mlp", dataset="shakespeare"), "'shakespeare' is a text dataset \\(task charlm\\); valid"),
    (TaskConfig(name="linreg", dataset="mnist"), "'mnist' is a classification dataset; valid for a regression"),
    (TaskConfig(name="mlp", dataset="/no/such/file.svm"), "'/no/such/file.svm' is neither"),
    (TaskConfig(name="logreg", dataset="diabetes"), "regression dataset; valid for a classification task: breast_cancer"),
    (TaskConfig(name="cnn", dataset="wine"), "image dataset.*valid: digits, mnist"),
    (TaskConfig(name="logreg", partition="pathological"), "unknown partition.*valid: classes, dirichlet, iid"),
    (TaskConfig(name="logreg", batch_size=-1), "batch_size must be >= 0"),
    (TaskConfig(name="mlp", hidden=0), "hidden must be >= 1"),
    (TaskConfig(name="linreg", dim=0), "dim must be >= 1"),
    (TaskConfig(name="linreg", dataset="boston"), "valid: synthetic, diabetes, or a path"),
])
def test_bad_task_configurations_raise_one_line_config_errors(cfg, message):
    with pytest.raises(ConfigError, match=message) as info:
        make_task(cfg, 4, seed=0)
    assert "\n" not in str(info.value)


def test_a_file_that_is_not_libsvm_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.svm"
    bad.write_text("this is not libsvm\n")
    with pytest.raises(ConfigError, match="not a valid LIBSVM file"):
        make_task(TaskConfig(name="logreg", dataset=str(bad)), 2, seed=0)


def test_registry_holds_every_task_the_config_names():
    assert set(TASKS) == {"linreg", "logreg", "mlp", "cnn", "charlm"}
