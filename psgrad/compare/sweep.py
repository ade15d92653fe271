"""Run a comparison: every (contender, grid point), then extra seeds of each winner, then the outputs.

In one process every run goes through the local transport; under mpirun
every rank walks the same sweep in the same order and each run goes through
the MPI transport (rank 0 server, the other ranks workers). The two give
bit-identical runs, so the tables are identical either way.
"""
import copy
import json
from pathlib import Path

import yaml
from tqdm import tqdm

from .. import config as config_mod
from ..errors import ConfigError, PsgradError
from ..runtime.results import read_metrics
from ..runtime.loop import build, build_scheme, resolve_workers, run_local, run_mpi
from ..transport.mpi import agree, handshake
from . import figures, table
from .spec import with_seed


def run_comparison(comparison, comm=None, progress=True, resume=False, verbose=False):
    """Run the sweep; on rank 0 (or in one process) write the outputs and return the table rows.

    ``verbose`` passes each run's own progress lines through (above the bar).
    """
    world = comm.Get_size() if comm is not None else 1
    rank = comm.Get_rank() if comm is not None else 0
    check_target(comparison, world)
    bar = None
    if rank == 0:
        comparison.out.mkdir(parents=True, exist_ok=True)
        total = len(comparison.points) + len(comparison.contenders) * (comparison.repeats - 1)
        bar = tqdm(total=total, desc=comparison.name, unit="run", disable=not progress, dynamic_ncols=True)
    say = _quiet
    if verbose and bar is not None:
        say = bar.write if progress else print

    results = {}
    for point in comparison.points:
        results[point.run_name] = run_point(point, comparison, comm, world, resume, bar, say)

    winners = None
    if rank == 0:
        winners = [c.points[table.best_index([results[p.run_name] for p in c.points], comparison.target)]
                   for c in comparison.contenders]
    if comm is not None:
        winners = agree(comm, [c.points.index(w) for c, w in zip(comparison.contenders, winners)]
                        if rank == 0 else None, comparison.points[0].cfg.run.timeout, "for rank 0's winners")[0]
        winners = [c.points[i] for c, i in zip(comparison.contenders, winners)]
    repeats = {}
    for c, point in zip(comparison.contenders, winners):
        for k in range(1, comparison.repeats):
            seeded = with_seed(point, point.cfg.run.seed + k)
            res = run_point(seeded, comparison, comm, world, resume, bar, say)
            repeats.setdefault(c.label, []).append(res)
    if rank != 0:
        return None
    bar.close()
    return write_outputs(comparison, results, repeats, winners, world)


def run_point(point, comparison, comm, world, resume, bar, say):
    """One run (skipped with ``resume`` when its folder already holds the same finished run); rank 0 gets its result."""
    cfg = resolve_workers(copy.deepcopy(point.cfg), world)
    folder = Path(cfg.run.results_dir) / cfg.run.name
    done = resume and finished(folder, cfg) if (comm is None or comm.Get_rank() == 0) else None
    if comm is not None:
        done = agree(comm, done, cfg.run.timeout, "for rank 0 to look for a finished run")[0]
    if bar is not None:
        bar.set_postfix_str(cfg.run.name, refresh=False)
    diverged = False
    if not done:
        task, sc = build(cfg)
        if comm is not None and world > 1:
            handshake(comm, cfg)
            summary, _ = run_mpi(cfg, task, sc, comm, log=say)
        else:
            try:
                summary, _ = run_local(cfg, task, sc, log=say)
            except PsgradError as e:
                if not is_divergence(e):
                    raise
                # A step size that blows up is a result of the grid, not a failure of the comparison.
                diverged = True
                where = getattr(e, "psgrad_where", (None, None))[1]
                say(f"{cfg.run.name}: diverged in round {where}")
    if bar is None:
        return None
    bar.update(1)
    if diverged:
        return table.diverged_result(read_metrics(folder), comparison.target)
    if done:
        summary = json.loads((folder / "summary.json").read_text())
    return table.run_result(read_metrics(folder), comparison.target, summary)


def is_divergence(exc):
    """Whether ``exc`` is the runtime's report of a non-finite gradient or loss."""
    return "not finite" in str(exc)


def finished(folder, cfg):
    """Whether ``folder`` holds a complete run of exactly ``cfg``."""
    try:
        return (folder / "summary.json").is_file() and config_mod.load(folder / "config.yaml") == cfg
    except ConfigError:
        return False


def check_target(comparison, world):
    """The target metric must be one the task evaluates, and every run must evaluate it at the end."""
    cfg = resolve_workers(copy.deepcopy(comparison.points[0].cfg), world)
    task, _ = build(cfg)
    if comparison.target.metric not in task.metric_names:
        raise ConfigError(f"target.metric: task {cfg.task.name!r} evaluates {', '.join(task.metric_names)}; "
                          f"got {comparison.target.metric!r}")
    for p in comparison.points:
        try:
            resolve_workers(copy.deepcopy(p.cfg), world)
            build_scheme(p.cfg, task).check_codec(task.d)
        except (ConfigError, ValueError) as e:
            raise ConfigError(f"contender {p.label!r} ({p.describe()}): {e}") from None


def write_outputs(comparison, results, repeats, winners, world):
    out = comparison.out
    rows = table.table_rows(comparison, results, repeats)
    table.write_csv(out / "table.csv", rows, table.COLUMNS)
    table.write_csv(out / "sweep.csv", table.sweep_rows(comparison, results), table.SWEEP_COLUMNS)
    (out / "table.md").write_text(table.markdown(comparison, rows, describe(comparison)))
    (out / "compare.yaml").write_text(yaml.safe_dump(comparison.source, sort_keys=False))
    curves = [(c.label, c.proposed, read_metrics(Path(w.cfg.run.results_dir) / w.run_name))
              for c, w in zip(comparison.contenders, winners)]
    figures.plot(comparison, curves, out / "bits.png", "bits")
    figures.plot(comparison, curves, out / "rounds.png", "rounds")
    return rows


def describe(comparison):
    """The setting and the rules, stated above the table."""
    cfg = comparison.points[0].cfg
    t, r = cfg.task, cfg.run
    batch = "full local batches (gradient descent)" if t.batch_size == 0 else f"minibatches of {t.batch_size}"
    split = {"iid": "iid", "dirichlet": f"Dirichlet({t.alpha:g})", "classes": f"{t.classes_per_agent} classes each"}
    dataset = f"d={t.dim} synthetic" if t.name == "linreg" else t.dataset
    workers = r.workers or "8 (or the MPI world's)"
    downs = sorted({f"{p.cfg.downlink.scheme}/{p.cfg.downlink.codec}" for p in comparison.points})
    down = ("the server broadcasts the fp32 model every round" if downs == ["direct/fp32"]
            else f"{', '.join(downs)} (scheme/codec) as each contender sets it")
    return (f"Task {t.name} on {dataset}, {workers} workers x {r.agents_per_worker} agents, {split[t.partition]} "
            f"partition, {batch}; server SGD (momentum {cfg.optim.momentum:g}); {r.rounds} rounds, evaluated every "
            f"{r.eval_every} round(s), seed {r.seed}. Each contender was tuned over {comparison.grid_size()} grid "
            f"points of its own parameters (the same number for every contender); shown is its best point: fewest "
            f"{comparison.target.count} payload bits at the first evaluated round meeting the target (no interpolation), else best "
            f"final value. Ratios divide by the fewest bits of any baseline; **bold** contenders are the proposed "
            f"schemes. Downlink: {down}.")


def _quiet(line):
    pass
