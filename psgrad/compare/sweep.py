"""Run a comparison: every (contender, grid point, seed), then any grid extensions, then the outputs.

In one process every run goes through the local transport; under mpirun
every rank walks the same sweep in the same order and each run goes through
the MPI transport (rank 0 server, the other ranks workers). The two give
bit-identical runs, so the tables are identical either way. Only rank 0
holds the results, so it alone decides each grid extension and tells the
other ranks.

Grid extension (``grid_policy: extend``), one step at a time: for every
contender whose best point lies on the edge of a numeric axis, the next
value past that edge (``spec.beyond``: twice the largest, half the
smallest) joins the axis, and its new points (that value x the other axes'
values) run on every seed. Steps repeat until every winner is interior on
every axis it can extend, or each side it sits on has had
``grid_extend_max`` new values, or has no valid next value (not a new
positive number, or a run config or codec the contender refuses).
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
from .spec import beyond, edges


def run_comparison(comparison, comm=None, progress=True, resume=False, verbose=False):
    """Run the sweep; on rank 0 (or in one process) write the outputs and return the table rows.

    ``verbose`` passes each run's own progress lines through (above the bar).
    """
    world = comm.Get_size() if comm is not None else 1
    rank = comm.Get_rank() if comm is not None else 0
    task = check_target(comparison, world)
    bar = None
    if rank == 0:
        comparison.out.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=0, desc=comparison.name, unit="run", disable=not progress, dynamic_ncols=True)
    say = _quiet
    if verbose and bar is not None:
        say = bar.write if progress else print

    results, tries, step = {}, {}, 0
    pending = comparison.points
    while pending:
        if bar is not None:
            bar.total += len(pending) * comparison.seeds
            bar.refresh()
        for point in pending:
            for run in comparison.seeded(point):
                results[run.run_name] = run_point(run, comparison, comm, world, resume, bar, say)
        step += 1
        pending = extend_grids(comparison, results, task, world, comm, tries, step, say)
    if rank != 0:
        return None
    bar.close()
    return write_outputs(comparison, results)


def extend_grids(comparison, results, task, world, comm, tries, step, say):
    """One extension step (``grid_policy: extend``); return the new points, the same on every rank.

    ``tries[(label, path, side)]`` counts the values tried past each edge (rank 0's bookkeeping).
    """
    if comparison.grid_policy != "extend":
        return []
    plan = []
    if comm is None or comm.Get_rank() == 0:
        for i, c in enumerate(comparison.contenders):
            best, _ = table.winner(comparison, c, results)
            for path, side in edges(c, best):
                key = (c.label, path, side)
                if tries.get(key, 0) >= comparison.grid_extend_max:
                    continue
                tries[key] = tries.get(key, 0) + 1
                value = beyond(c.grid[path], side)
                try:
                    if value is None:
                        raise ConfigError("no new positive value")
                    for p in c.points_with(path, value):
                        check_point(p, task, world)
                except ConfigError as e:
                    say(f"{c.label}: {path} stays at its {side} edge ({e})")
                    tries[key] = comparison.grid_extend_max
                    continue
                plan.append([i, path, value])
    if comm is not None:
        plan = agree(comm, plan if comm.Get_rank() == 0 else None, comparison.points[0].cfg.run.timeout,
                     "for rank 0's grid extension")[0]
    return [p for i, path, value in plan for p in comparison.contenders[i].extend(path, value, step)]


# Left in a run folder by a run that diverged (it has no summary.json), so that ``--resume`` keeps its result.
DIVERGED = "diverged.json"


def run_point(point, comparison, comm, world, resume, bar, say):
    """One run (skipped with ``resume`` when its folder already holds the same finished or diverged run); rank 0
    gets its result."""
    cfg = resolve_workers(copy.deepcopy(point.cfg), world)
    folder = Path(cfg.run.results_dir) / cfg.run.name
    done = resume and finished(folder, cfg) if (comm is None or comm.Get_rank() == 0) else None
    if comm is not None:
        done = agree(comm, done, cfg.run.timeout, "for rank 0 to look for a finished run")[0]
    if bar is not None:
        bar.set_postfix_str(cfg.run.name, refresh=False)
    diverged = False
    if not done:
        if comm is None or comm.Get_rank() == 0:
            (folder / DIVERGED).unlink(missing_ok=True)
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
                (folder / DIVERGED).write_text(json.dumps({"error": str(e)}) + "\n")
    if bar is None:
        return None
    bar.update(1)
    if diverged or (folder / DIVERGED).is_file():
        return table.diverged_result(read_metrics(folder), comparison.target)
    if done:
        summary = json.loads((folder / "summary.json").read_text())
    return table.run_result(read_metrics(folder), comparison.target, summary)


def is_divergence(exc):
    """Whether ``exc`` is the runtime's report of a non-finite gradient or loss."""
    return "not finite" in str(exc)


def finished(folder, cfg):
    """Whether ``folder`` holds a complete (or diverged) run of exactly ``cfg``."""
    try:
        return (((folder / "summary.json").is_file() or (folder / DIVERGED).is_file())
                and config_mod.load(folder / "config.yaml") == cfg)
    except ConfigError:
        return False


def check_target(comparison, world):
    """The target metric must be one the task evaluates, and every run must evaluate it at the end.

    Returns the task (built once), for checking the points that grid extension adds.
    """
    cfg = resolve_workers(copy.deepcopy(comparison.points[0].cfg), world)
    task, _ = build(cfg)
    if comparison.target.metric not in task.metric_names:
        raise ConfigError(f"target.metric: task {cfg.task.name!r} evaluates {', '.join(task.metric_names)}; "
                          f"got {comparison.target.metric!r}")
    for p in comparison.points:
        check_point(p, task, world)
    return task


def check_point(point, task, world):
    """Raise ``ConfigError`` naming the contender and grid point when its workers or codec do not fit."""
    try:
        resolve_workers(copy.deepcopy(point.cfg), world)
        build_scheme(point.cfg, task).check_codec(task.d)
    except (ConfigError, ValueError) as e:
        raise ConfigError(f"contender {point.label!r} ({point.describe()}): {e}") from None


def write_outputs(comparison, results):
    out = comparison.out
    rows = table.table_rows(comparison, results)
    table.write_csv(out / "table.csv", rows, table.COLUMNS)
    table.write_csv(out / "sweep.csv", table.sweep_rows(comparison, results), table.SWEEP_COLUMNS)
    (out / "table.md").write_text(table.markdown(comparison, rows, describe(comparison)))
    (out / "compare.yaml").write_text(yaml.safe_dump(comparison.source, sort_keys=False))
    curves = [(c.label, c.proposed, [read_metrics(Path(run.cfg.run.results_dir) / run.run_name)
                                     for run in comparison.seeded(table.winner(comparison, c, results)[0])])
              for c in comparison.contenders]
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
    n, count = comparison.seeds, comparison.target.count
    seeds = (f"every grid point ran on {n} seeds ({r.seed}..{r.seed + n - 1}); numbers are medians over them, a "
             f"seed that misses the target counting as infinitely many bits, and the interval is the "
             f"order-statistics interval of the median bits (distribution-free, coverage as its header states)"
             if n > 1 else f"one seed ({r.seed})")
    grids = (f"grids on whose edge a winner lay were extended (x2 past the largest value, /2 past the smallest, "
             f"at most {comparison.grid_extend_max} new values per axis side), so the runs column differs"
             if comparison.grid_policy == "extend" else "grids were not extended")
    c = cfg.clock
    clock = (f" Simulated clock: every client {c.uplink_mbps:g} Mbit/s up, "
             f"{c.downlink_mbps or c.uplink_mbps:g} Mbit/s down, {c.samples_per_s:g} training samples/s"
             f"{f' (log-normal spread {c.spread:g} per client)' if c.spread else ''}; a client's round is its "
             f"compute, then the model's payload down, then its message's payload up, and a round lasts as long "
             f"as its slowest client." if c.enabled and not c.trace else
             f" Simulated clock from the trace {c.trace}." if c.trace else "")
    return (f"Task {t.name} on {dataset}, {workers} workers x {r.agents_per_worker} agents, {split[t.partition]} "
            f"partition, {batch}; server SGD (momentum {cfg.optim.momentum:g}); {r.rounds} rounds, evaluated every "
            f"{r.eval_every} round(s); {seeds}. Each contender was tuned over {comparison.grid_size()} grid points "
            f"of its own parameters (the same number for every contender; {grids}); shown is its best point: "
            f"fewest {f'{count} payload bits' if count != 'time' else 'simulated seconds'} at the first evaluated "
            f"round meeting the target (no interpolation), else "
            f"best final value. 'On grid edge' names a numeric axis whose largest (max) or smallest (min) value "
            f"won: the optimum may lie beyond the grid. Ratios divide by the fewest bits of any baseline; **bold** "
            f"contenders are the proposed schemes. Downlink: {down}.{clock}")


def _quiet(line):
    pass
