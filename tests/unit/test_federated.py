"""Federated rounds: cohorts, local steps, server optimizers, absences, dropouts, deadlines and the clock."""
import subprocess
import sys

import numpy as np
import pytest

from psgrad import config
from psgrad.errors import ConfigError
from psgrad.runtime import checkpoint
from psgrad.runtime.federated import Participation, local_update
from psgrad.runtime.loop import build, resolve_workers, run_local
from psgrad.runtime.optim import make as make_optimizer
from run_files import rows

FED = ["task.name=logreg", "task.dataset=digits", "task.batch_size=8", "run.workers=3", "run.clients=30",
       "run.clients_per_round=6", "task.local_steps=3", "task.local_lr=0.1", "optim.lr=1.0", "run.rounds=8",
       "run.eval_every=4", "run.log_every=1000", "run.digest_every=1", "scheme.name=tpc", "scheme.codec=qsgd"]


def make(tmp_path, name, *overrides, base=FED):
    cfg = resolve_workers(config.load(None, [f"run.results_dir={tmp_path}", f"run.name={name}", *base, *overrides]),
                          1)
    return (cfg, *build(cfg))


def run(tmp_path, name, *overrides, base=FED):
    cfg, task, sc = make(tmp_path, name, *overrides, base=base)
    summary, server = run_local(cfg, task, sc, log=lambda line: None)
    return summary, server, rows(tmp_path / name / "metrics.csv"), rows(tmp_path / name / "agents.csv")


def plan_of(cfg, task):
    return Participation(cfg, task.agent_sizes)


def test_a_cohort_is_k_distinct_agents_drawn_anew_each_round_and_uniform_over_many_rounds(tmp_path):
    cfg, task, _ = make(tmp_path, "x")
    p = plan_of(cfg, task)
    cohorts = [p.cohort(t) for t in range(3000)]
    assert all(len(c) == 6 and len(set(c.tolist())) == 6 and (np.diff(c) > 0).all() for c in cohorts)
    assert not all((cohorts[0] == c).all() for c in cohorts[1:5])
    counts = np.bincount(np.concatenate(cohorts), minlength=30) / 3000
    assert np.abs(counts - 6 / 30).max() < 0.03  # each agent in 20% of the rounds (sd 0.7%)
    assert (p.cohort(17) == plan_of(cfg, task).cohort(17)).all()  # a function of (seed, round) alone


def test_size_sampling_draws_agents_in_proportion_to_their_data(tmp_path):
    cfg, task, _ = make(tmp_path, "x", "run.sampling=size", "run.clients_per_round=1", "task.partition=dirichlet",
                        "task.alpha=0.3")
    p = plan_of(cfg, task)
    counts = np.bincount(np.concatenate([p.cohort(t) for t in range(6000)]), minlength=30) / 6000
    share = task.agent_sizes / task.agent_sizes.sum()
    assert np.abs(counts - share).max() < 0.02


def test_only_the_cohort_computes_sends_and_is_counted(tmp_path):
    summary, server, metrics, agents = run(tmp_path, "fed")
    cfg, task, _ = make(tmp_path, "x")
    p = plan_of(cfg, task)
    for t in range(8):
        sent = sorted(int(m["agent"]) for m in agents if int(m["round"]) == t)
        assert sent == p.cohort(t).tolist()
    d = task.d
    for m in metrics[1:]:
        assert int(m["sampled"]) == 6 and int(m["dropouts"]) == 0
        assert int(m["down_payload_bits"]) == 6 * 32 * d
    assert summary["fp32_uplink_bits"] == 32 * d * 6 * 8
    assert summary["uplink_payload_bits"] == sum(int(m["payload_bits"]) for m in agents)


def test_one_local_step_at_rate_one_is_the_gradient_round_bit_for_bit(tmp_path):
    base = ["task.name=mlp", "task.dataset=digits", "task.batch_size=16", "run.workers=2", "run.clients=4",
            "optim.lr=0.3", "optim.momentum=0.9", "run.rounds=6", "run.log_every=1000", "run.digest_every=1",
            "scheme.name=tpc", "scheme.codec=qsgd"]
    grad, grad_server, grad_metrics, grad_agents = run(tmp_path, "grad", base=base)
    fed, fed_server, fed_metrics, fed_agents = run(tmp_path, "fed", "task.local_steps=1", "task.local_lr=1.0",
                                                   base=base)
    assert fed_server.params.tobytes() == grad_server.params.tobytes()
    assert fed["uplink_payload_bits"] == grad["uplink_payload_bits"]
    drop_time = lambda rs: [{k: v for k, v in r.items() if k != "time_s"} for r in rs]  # noqa: E731
    assert drop_time(fed_metrics) == drop_time(grad_metrics)
    assert fed_agents == grad_agents


def test_local_steps_follow_their_own_batches_and_momentum(tmp_path):
    cfg, task, _ = make(tmp_path, "x")
    w = task.init_params()
    loss, update = local_update(task, 3, w, 5, 3, 0.1, 0.5)
    # By hand: three steps of heavy-ball SGD, each on its own (round, step) batch
    v = np.zeros_like(w)
    local = w
    for e in range(3):
        first, g = task.local_grad(3, local, 5, step=e)
        if e == 0:
            assert first == loss
        v = np.float32(0.5) * v + g
        local = local - np.float32(0.1) * v
    np.testing.assert_allclose(w - update, local, rtol=0, atol=1e-6)
    assert not (task.batch(3, 5, 0) == task.batch(3, 5, 1)).all()


def test_local_epochs_set_the_steps_from_each_agents_data(tmp_path):
    from psgrad.runtime.federated import local_steps
    cfg, task, _ = make(tmp_path, "x", "task.local_steps=0", "task.local_epochs=2")
    assert local_steps(cfg.task, 20) == 2 * 3  # batches of 8: 3 per epoch
    assert local_steps(cfg.task, 8) == 2


@pytest.mark.parametrize("name", ["fedavgm", "fedadam", "fedyogi", "fedadagrad"])
def test_server_optimizers_follow_reddi_et_al(tmp_path, name):
    cfg = config.load(None, [f"optim.name={name}", "optim.lr=0.5", "optim.beta1=0.8", "optim.beta2=0.9",
                             "optim.tau=0.01", *(["optim.momentum=0.9"] if name == "fedavgm" else [])])
    opt = make_optimizer(cfg.optim, 10)
    rng = np.random.default_rng(0)
    w = rng.standard_normal(5).astype(np.float32)
    state = opt.init(5)
    m, v, mom = np.zeros(5), np.full(5, 1e-4), np.zeros(5)
    ref = w.astype(np.float64)
    for t in range(3):
        g = rng.standard_normal(5).astype(np.float32)
        w, state = opt.step(state, w, g, t)
        g = g.astype(np.float64)
        if name == "fedavgm":
            mom = 0.9 * mom + g
            ref = ref - 0.5 * mom
            continue
        m = 0.8 * m + 0.2 * g
        v = {"fedadagrad": v + g * g, "fedadam": 0.9 * v + 0.1 * g * g,
             "fedyogi": v - 0.1 * g * g * np.sign(v - g * g)}[name]
        ref = ref - 0.5 * m / (np.sqrt(v) + 0.01)
    np.testing.assert_allclose(w, ref, rtol=1e-5, atol=1e-6)


def test_fedadam_trains_a_federated_model(tmp_path):
    summary, _, metrics, _ = run(tmp_path, "adam", "optim.name=fedadam", "optim.lr=0.03", "run.rounds=20",
                                 "scheme.name=direct", "scheme.codec=fp32")
    assert float(metrics[-1]["test_accuracy"]) > 0.7 > float(metrics[0]["test_accuracy"])


def test_dropouts_leave_the_cohort_unheard_and_are_counted(tmp_path):
    summary, server, metrics, agents = run(tmp_path, "drop", "run.dropout=0.4")
    cfg, task, _ = make(tmp_path, "x", "run.dropout=0.4")
    p = plan_of(cfg, task)
    total = 0
    for t in range(8):
        plan = p.plan(t)
        assert sorted(int(m["agent"]) for m in agents if int(m["round"]) == t) == plan.reporting.tolist()
        assert int(metrics[t + 1]["dropouts"]) == len(plan.dropped)
        total += len(plan.dropped)
    assert 0 < total < 6 * 8


def test_a_deadline_on_the_clock_drops_late_reports_and_keeps_their_state(tmp_path):
    clock = ["clock.uplink_mbps=0.001", "clock.samples_per_s=1000", "clock.spread=1.0", "run.deadline=4"]
    summary, server, metrics, agents = run(tmp_path, "late", *clock)
    late = sum(int(m["dropouts"]) for m in metrics[1:])
    assert 0 < late < 6 * 8
    assert len(agents) == 6 * 8 - late
    # A round with a late report lasts the deadline; every other lasts its slowest report
    times = np.diff([float(m["sim_time"]) for m in metrics])
    cfg, task, _ = make(tmp_path, "x", *clock)
    for t, m in enumerate(metrics[1:]):
        mine = [a for a in agents if int(a["round"]) == t]
        if int(m["dropouts"]):
            assert times[t] == 4.0
        else:
            slowest = max(server.clock.seconds(int(a["agent"]), 32 * task.d, int(a["payload_bits"])) for a in mine)
            assert times[t] == pytest.approx(slowest)
            assert times[t] <= 4.0
    # Every digest matched (digest_every=1): a late agent's state stayed as the server's mirror
    assert summary["rounds"] == 8


def test_stale_estimates_of_absent_clients_enter_the_aggregate_only_when_asked(tmp_path):
    ef21 = ["scheme.name=ef21", "scheme.codec=topk", "scheme.codec_params={ratio: 0.3}"]
    _, skip, _, _ = run(tmp_path, "skip", *ef21, "run.rounds=2")
    _, one, _, _ = run(tmp_path, "one", *ef21, "run.rounds=1", "run.absent=stale")
    _, two, _, _ = run(tmp_path, "two", *ef21, "run.rounds=2", "run.absent=stale")
    assert skip.params.tobytes() != two.params.tobytes()
    # Round 1's step (lr 1) is the data-weighted mean of every client's shift, the absent ones' included
    p = plan_of(two.cfg, two.task)
    absent_with_shift = [a for a in p.cohort(0) if a not in p.cohort(1)]
    assert absent_with_shift and all(np.abs(two.mirrors[a].h).sum() > 0 for a in absent_with_shift)
    weights = two.sizes / two.sizes.sum()
    aggregate = sum(w * m.h.astype(np.float64) for w, m in zip(weights, two.mirrors.values(range(30))))
    np.testing.assert_allclose(one.params - two.params, aggregate, rtol=1e-4, atol=1e-6)
    with pytest.raises(ConfigError, match="run.absent=stale needs a scheme"):
        run(tmp_path, "bad", "run.absent=stale")


def test_a_run_with_cohorts_killed_mid_round_resumes_bit_identical(tmp_path):
    sets = ["run.dropout=0.2", "clock.uplink_mbps=0.01", "clock.samples_per_s=1000", "clock.spread=1.0",
            "run.deadline=0.5", "optim.name=fedadam", "optim.lr=0.05"]
    ref, ref_server, ref_metrics, ref_agents = run(tmp_path, "ref", *sets)
    cfg, task, sc = make(tmp_path, "run", *sets, "run.checkpoint_every=3")
    original = task.local_grad

    def crash(agent, params, t=0, out=None, phases=None, step=0):
        if t == 7:
            raise RuntimeError("simulated node failure")
        return original(agent, params, t, out, phases, step)

    task.local_grad = crash
    with pytest.raises(RuntimeError):
        run_local(cfg, task, sc, log=lambda line: None)
    cfg, task, sc = make(tmp_path, "run", *sets, "run.checkpoint_every=3")
    resume = checkpoint.load(tmp_path / "run", cfg, sc, task)
    assert resume[0]["round"] == 6
    summary, server = run_local(cfg, task, sc, log=lambda line: None, resume=resume)
    assert server.params.tobytes() == ref_server.params.tobytes()
    drop_time = lambda rs: [{k: v for k, v in r.items() if k != "time_s"} for r in rs]  # noqa: E731
    assert drop_time(rows(tmp_path / "run" / "metrics.csv")) == drop_time(ref_metrics)
    assert rows(tmp_path / "run" / "agents.csv") == ref_agents


def test_a_thousand_clients_run_with_ten_per_round(tmp_path):
    summary, server, metrics, agents = run(tmp_path, "k", "task.name=linreg", "task.dim=5", "task.samples_per_agent=4",
                                           "run.clients=1000", "run.clients_per_round=10", "run.workers=8",
                                           "run.rounds=5", "task.batch_size=0", "task.local_steps=2")
    assert summary["agents"] == 1000
    assert len(agents) == 50 and len({a["agent"] for a in agents}) > 40


@pytest.mark.parametrize("override, message", [
    (["run.clients_per_round=31"], "run.clients_per_round=31 is more than the run.clients=30 agents"),
    (["run.clients=0", "run.clients_per_round=4"], "run.clients_per_round=4 is more than the 3 agents"),
    (["task.local_lr=-0.1"], "task.local_lr: expected a value > 0"),
    (["run.dropout=1.5"], "run.dropout: expected a value in \\[0, 1\\)"),
    (["run.dropout=-0.1"], "run.dropout: expected a value in \\[0, 1\\)"),
    (["task.local_momentum=-0.5"], "task.local_momentum: expected a value in \\[0, 1\\)"),
    (["clock.uplink_mbps=-1"], "clock.uplink_mbps: expected a value >= 0"),
    (["run.deadline=2"], "run.deadline=2 needs a simulated clock"),
    (["optim.name=fedavgm"], "fedavgm is SGD with server momentum"),
    (["downlink.scheme=ef21p", "downlink.codec=topk"], "with run.clients_per_round a client would miss"),
])
def test_bad_federated_configs_give_one_line(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message) as e:
        cfg, task, sc = make(tmp_path, "bad", *override)
        run_local(cfg, task, sc, log=lambda line: None)
    assert "\n" not in str(e.value)


def test_a_trace_without_every_client_is_refused(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("client,uplink_mbps,downlink_mbps,samples_per_s\n" +
                     "".join(f"{a},1,10,100\n" for a in range(29)))
    with pytest.raises(ConfigError, match=r"has no row for clients \[29\]") as e:
        cfg, task, sc = make(tmp_path, "bad", f"clock.trace={trace}")
        run_local(cfg, task, sc, log=lambda line: None)
    assert "\n" not in str(e.value)


def test_the_cohort_and_the_bits_do_not_depend_on_the_number_of_ranks(tmp_path):
    sets = ["--set", "task.name=logreg", "--set", "task.dataset=digits", "--set", "run.clients=12",
            "--set", "run.clients_per_round=5", "--set", "task.local_steps=2", "--set", "task.batch_size=8",
            "--set", "run.rounds=6", "--set", "run.dropout=0.2", "--set", f"run.results_dir={tmp_path}",
            "--set", "task.local_lr=0.1", "--set", "optim.lr=1.0"]
    out = {}
    for n in (1, 3, 5):
        launch = [sys.executable] if n == 1 else ["mpirun", "-n", str(n), sys.executable]
        r = subprocess.run([*launch, "-m", "psgrad.train", *sets, "--set", f"run.name=n{n}"], capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        out[n] = rows(tmp_path / f"n{n}" / "agents.csv"), (tmp_path / f"n{n}" / "model.npy").read_bytes()
    strip = lambda rs: [(r["round"], r["agent"], r["payload_bits"], r["loss"]) for r in rs]  # noqa: E731
    assert strip(out[1][0]) == strip(out[3][0]) == strip(out[5][0])
    assert out[1][1] == out[3][1] == out[5][1]  # the same model, bit for bit


def test_a_state_store_over_its_budget_spills_to_disk_and_reads_back_the_same_bytes():
    from psgrad.runtime.store import StateStore
    from psgrad.schemes.shift import ShiftState
    store = StateStore(ShiftState(np.zeros(100, np.float32)), budget=1000)  # room for two states of 400 bytes
    states = {a: ShiftState(np.full(100, a, np.float32)) for a in range(5)}
    for a, s in states.items():
        store[a] = s
    assert len(store.memory) == 2 and store.used <= 1000 and store.on_disk == {0, 1, 2}
    assert all(store[a].h.tobytes() == states[a].h.tobytes() for a in range(5))
    assert not store[0].h.flags.writeable
    assert store[7].h.tobytes() == np.zeros(100, np.float32).tobytes()  # never stored: the initial state


def test_a_run_whose_states_live_mostly_on_disk_equals_one_held_in_memory(tmp_path):
    sets = ["scheme.name=ef21", "scheme.codec=topk", "scheme.codec_params={ratio: 0.3}", "run.absent=stale"]
    _, memory, _, agents = run(tmp_path, "memory", *sets)
    _, disk, _, disk_agents = run(tmp_path, "disk", *sets, "run.mirror_memory=0.01")  # 10 KiB: a few states
    assert disk.mirrors.on_disk and disk.params.tobytes() == memory.params.tobytes()
    assert disk_agents == agents


def test_a_comparison_counts_simulated_seconds_to_target_and_plots_against_them(tmp_path):
    from psgrad import plot
    from psgrad.compare import figures, from_dict, run_comparison
    from psgrad.runtime.results import read_metrics
    base = {"task": {"name": "logreg", "dataset": "digits", "batch_size": 8, "local_steps": 3, "local_lr": 0.1},
            "optim": {"lr": 1.0}, "run": {"workers": 3, "clients": 30, "clients_per_round": 6, "rounds": 6,
                                          "eval_every": 1},
            "clock": {"uplink_mbps": 1, "downlink_mbps": 10, "samples_per_s": 500, "spread": 0.5}}
    spec = {"name": "clock", "results_dir": str(tmp_path), "base": base,
            "target": {"metric": "test_accuracy", "at_least": 0.78, "count": "time"},
            "contenders": [{"label": "fp32", "scheme": "direct", "codec": "fp32"},
                           {"label": "fp16", "scheme": "direct", "codec": "fp16", "proposed": True}]}
    comparison = from_dict(spec)
    run_comparison(comparison, progress=False)
    out = tmp_path / "clock"
    curves = []
    for row in rows(out / "table.csv"):
        metrics = read_metrics(out / "runs" / row["label"])
        first = next(m for m in metrics if m.get("test_accuracy", 0) >= 0.78)
        assert 0 < float(row["bits_to_target"]) == float(row["seconds_to_target"]) == first["sim_time"]
        assert int(row["uplink_bits_to_target"]) == first["cum_up_payload_bits"]
        curves.append((row["label"], row["proposed"] == "True", [metrics]))
    assert (out / "table.md").read_text().startswith("# clock: simulated seconds to reach test_accuracy >= 0.78")
    ax = figures.figure(comparison, curves, "bits").axes[0]
    assert ax.get_xlabel() == "simulated time (s)"
    assert list(ax.lines[0].get_xdata()) == [m["sim_time"] for m in curves[0][2][0]]
    # psgrad.plot draws a run against its simulated time
    run = out / "runs" / "fp16"
    assert plot.main([str(run), "--x", "sim_time", "--out", str(tmp_path / "sim.png")]) == 0
    sim = plot.figure_runs([run], xs=("sim_time",)).axes[0]
    assert list(sim.lines[0].get_xdata()) == [m["sim_time"] for m in read_metrics(run) if "train_loss" in m]
    # without a clock there are no seconds to count
    del spec["base"]["clock"]
    with pytest.raises(ConfigError, match="target.count: time counts simulated seconds, but contender 'fp32'"):
        from_dict(spec)


def test_the_federated_bench_measures_memory_on_tpc_with_p_3_and_d_about_1e5(tmp_path):
    from psgrad.bench import federated as bench
    cfg, task, sc = make(tmp_path, "bench", *bench.COMMON, *bench.MEMORY, base=[])
    assert (cfg.run.clients, cfg.scheme.name, sc.p, bench.P) == (1000, "tpc", 3, 3)
    assert task.d == 101_770  # 784 x 128 + 128 + 128 x 10 + 10
