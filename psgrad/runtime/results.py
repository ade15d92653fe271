"""A run's folder: ``results/<name>/`` with config.yaml, metrics.csv, agents.csv, summary.json, plots."""
import csv
import fcntl
import hashlib
import json
import math
import os
import resource
import time

import numpy as np
from pathlib import Path

from .. import config as config_mod, units
from ..errors import ConfigError
from .accounting import CUMULATIVE_FIELDS, MESSAGE_FIELDS, ROUND_FIELDS


class Recorder:
    """Rank 0's record of a run: writes metrics as rounds close and the summary at the end.

    metrics.csv grows by one flushed row per round; each round's message
    records are appended to the journal messages.jsonl, and the agents'
    scheme metrics to agent_info.jsonl when a checkpoint gathers them.
    agents.csv and summary.json are written from these at the end. A
    checkpoint stores the three files' lengths, and resuming cuts them back
    to those lengths, so a resumed run's files equal an uninterrupted run's.
    """

    def __init__(self, cfg, task, n_agents, log=print, resume=None):
        self.cfg = cfg
        self.task = task
        self.n_agents = n_agents
        self.log = log
        self.dir = Path(cfg.run.results_dir) / cfg.run.name
        self.dir.mkdir(parents=True, exist_ok=True)
        config_mod.dump(cfg, self.dir / "config.yaml")
        self.columns = ("round", "lr", "agent_loss", "sampled", "dropouts", "skipped", "dropped", *ROUND_FIELDS,
                        *CUMULATIVE_FIELDS, *(("sim_time",) if cfg.clock.enabled else ()), *task.metric_names,
                        "time_s")
        self.messages = []
        self.infos = []
        self.last = {}
        self.evals = {}
        self.params = None
        self.t0 = time.perf_counter()
        self._first_round, self._first_time = 0, 0.0  # where this process's speed is measured from
        if resume is None:
            for name in STALE:  # a fresh run keeps no file of a run that was in its folder, its checkpoint above all
                (self.dir / name).unlink(missing_ok=True)
            for name in JOURNALS.values():
                (self.dir / name).write_bytes(b"")
            self._file = open(self.dir / "metrics.csv", "w", newline="")
            self._csv = csv.DictWriter(self._file, self.columns, restval="")
            self._csv.writeheader()
        else:
            self._resume(resume)
            self._csv = csv.DictWriter(self._file, self.columns, restval="")
        self._journals = {k: open(self.dir / name, "a") for k, name in JOURNALS.items()}
        self._board = board_writer()(log_dir=str(self.dir)) if cfg.run.tensorboard else None

    def _resume(self, state):
        """Cut the run's files back to the checkpoint (``check_files`` found them intact) and reload what the
        summary needs."""
        for key, name in FILES.items():
            with open(self.dir / name, "r+b") as f:
                f.truncate(int(state["bytes"][key]))
        self.messages = read_journal(self.dir / JOURNALS["messages"])
        self.infos = read_journal(self.dir / JOURNALS["infos"])
        self.last, self.evals = state["last"], state["evals"]
        self.t0 = time.perf_counter() - float(self.last.get("time_s", 0.0))
        self._first_round, self._first_time = int(self.last.get("round", 0)), float(self.last.get("time_s", 0.0))
        self._file = open(self.dir / "metrics.csv", "a", newline="")

    def position(self):
        """Make the run's files durable and return what a checkpoint needs to resume them."""
        sizes = {}
        for key, f in (("metrics", self._file), *self._journals.items()):
            f.flush()
            os.fsync(f.fileno())
            sizes[key] = f.tell()
        hashes = {key: prefix_digest(self.dir / name, sizes[key]) for key, name in FILES.items()}
        return {"bytes": sizes, "sha256": hashes, "last": self.last, "evals": self.evals}

    def add_infos(self, infos):
        """Keep the agents' scheme metrics gathered at a checkpoint (journaled)."""
        self.infos.extend(infos)
        self._journal("infos", infos)

    def _journal(self, key, records):
        f = self._journals[key]
        for r in records:
            f.write(json.dumps(r) + "\n")
        f.flush()

    def fp32_bits(self):
        """Uplink bits the messages so far would cost uncompressed (32 bits per coordinate per message)."""
        return 32 * self.task.d * len(self.messages)

    def start(self, params):
        """Row 0: the initial model, before any bit was sent."""
        self.params = params
        row = {"round": 0, "sampled": 0, "dropouts": 0, "skipped": 0, "dropped": 0,
               **dict.fromkeys(ROUND_FIELDS + CUMULATIVE_FIELDS, 0), **({"sim_time": 0.0} if self.cfg.clock.enabled else {}),
               **self._evaluate(params),
               "time_s": 0.0}
        self._write(row)

    def record(self, row, messages, params):
        t = row["round"]
        self.messages.extend(messages)
        self._journal("messages", messages)
        self.params = params
        if t % self.cfg.run.eval_every == 0 or t == self.cfg.run.rounds:
            row.update(self._evaluate(params))
        row["time_s"] = time.perf_counter() - self.t0
        self._write(row)
        if t % self.cfg.run.log_every == 0 or t == self.cfg.run.rounds:
            self.log(self._progress(row))

    def finish(self, infos, timings):
        """Write agents.csv and summary.json; ``infos``: those not yet given to ``add_infos``. Returns the summary."""
        self._file.close()
        for f in self._journals.values():
            f.close()
        if self._board is not None:
            self._board.close()
        # In (round, agent) order, however they were gathered, so that means are summed in one order
        infos = sorted(self.infos + list(infos), key=lambda i: (i["round"], i["agent"]))
        info_by_key = {(i["round"], i["agent"]): i for i in infos}
        extra = sorted({k for i in infos for k in i} - {"round", "agent"})
        with open(self.dir / "agents.csv", "w", newline="") as f:
            w = csv.DictWriter(f, (*MESSAGE_FIELDS, *extra), restval="")
            w.writeheader()
            for m in sorted(self.messages, key=lambda m: (m["round"], m["agent"])):
                w.writerow({**m, **info_by_key.get((m["round"], m["agent"]), {})})
        rounds = self.last["round"]
        up = self.last["cum_up_payload_bits"]
        summary = {
            "name": self.cfg.run.name, "dir": str(self.dir),
            "task": self.task.name, "scheme": self.cfg.scheme.name, "codec": self.cfg.scheme.codec,
            "d": self.task.d, "agents": self.n_agents, "rounds": rounds,
            "final": {k: self.evals[k] for k in self.task.metric_names if k in self.evals},
            "agent_loss": self.last["agent_loss"],
            "uplink_payload_bits": up,
            "uplink_wire_bytes": self.last["cum_up_wire_bytes"],
            "downlink_payload_bits": self.last["cum_down_payload_bits"],
            "downlink_wire_bytes": self.last["cum_down_wire_bytes"],
            "total_payload_bits": self.last["cum_total_bits"],
            "downlink": f"{self.cfg.downlink.scheme}/{self.cfg.downlink.codec}",
            "fp32_uplink_bits": self.fp32_bits(),
            "compression_vs_fp32": self.fp32_bits() / up if up else math.inf,
            "bits_per_coordinate": up / max(self.fp32_bits() / 32, 1),
            **infos_summary(infos),
            **tensor_bits(infos),
            "timings_s": timings,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # this process (rank 0)
        }
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        np.save(self.dir / "model.npy", self.params)
        self.log(summary_line(summary))
        return summary

    def _evaluate(self, params):
        self.evals = {k: float(v) for k, v in self.task.evaluate(params).items()}
        return self.evals

    def _write(self, row):
        self._csv.writerow(row)
        self._file.flush()
        self.last = row
        if self._board is not None:  # every number of the row, under its metrics.csv column name
            for k, v in row.items():
                if k != "round" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._board.add_scalar(k, v, row["round"])
            self._board.flush()

    def _progress(self, row):
        """One console line (under 100 columns with the built-in tasks): progress, elapsed time, rounds per
        second, ETA, the agents' loss, the held-out metrics (short names), cumulative uplink payload bits
        and their saving over fp32. A plain line every ``log_every`` rounds: logs stay readable off a tty."""
        t, total, elapsed = row["round"], self.cfg.run.rounds, row["time_s"]
        done = t - self._first_round
        rate = done / elapsed_since if (elapsed_since := elapsed - self._first_time) > 0 and done > 0 else math.nan
        eta = (total - t) / rate if rate > 0 else math.nan
        metrics = " ".join(f"{_SHORT.get(k, k)} {self.evals[k]:.4g}" for k in self.task.metric_names
                           if k in self.evals and not k.startswith("train_"))
        ratio = self.fp32_bits() / max(row["cum_up_payload_bits"], 1)
        return (f"[{t:>{len(str(total))}}/{total}] {units.duration(elapsed)} {rate:.3g} r/s "
                f"eta {units.duration(eta)} | loss {row['agent_loss']:.4g} {metrics} | "
                f"up {units.bits(row['cum_up_payload_bits'])} x{ratio:.1f}")


def board_writer():
    """TensorBoard's event writer class; ConfigError naming the pip extra when the package is missing."""
    try:
        import tensorboard  # noqa: F401  (torch's writer needs it, and says so less plainly)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("run.tensorboard needs the tensorboard package: pip install 'psgrad[tensorboard]'") from None
    return SummaryWriter


# Metric names as the console shortens them
_SHORT = {"test_loss": "test", "test_accuracy": "acc", "suboptimality": "subopt"}

# Append-only journals in the run folder, by role, and every file a checkpoint resumes
JOURNALS = {"messages": "messages.jsonl", "infos": "agent_info.jsonl"}
FILES = {"metrics": "metrics.csv", **JOURNALS}
# What a run folder that holds a run has (any of them)
RUN_FILES = ("config.yaml", "metrics.csv", "summary.json", "checkpoint.npz")
# What a fresh run removes before it writes its own (the files it rewrites need not be named)
STALE = ("checkpoint.npz", "summary.json", "agents.csv", "model.npy", "metrics.png")


def prefix_digest(path, size):
    """SHA-256 (hex) of the first ``size`` bytes of ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while size > 0:
            chunk = f.read(min(size, 1 << 20))
            if not chunk:
                break
            h.update(chunk)
            size -= len(chunk)
    return h.hexdigest()


def check_files(folder, position):
    """Raise ConfigError unless every file a resume continues is, up to the checkpoint, what it was then."""
    for key, name in FILES.items():
        path, size = Path(folder) / name, int(position["bytes"][key])
        if not path.is_file() or path.stat().st_size < size:
            raise ConfigError(f"cannot resume: {path} is missing or shorter than at the checkpoint ({size} bytes)")
        if prefix_digest(path, size) != position["sha256"][key]:
            raise ConfigError(f"cannot resume: {path} was changed after the checkpoint was written "
                              f"(its first {size} bytes differ)")


def claim(folder, cfg, fresh):
    """Rank 0's claim on run folder ``folder`` before anything in it is touched; ConfigError if refused.

    A lock (``.lock``, flock) keeps a second process out until ``release``. A fresh run refuses a folder
    that holds a run unless ``run.overwrite`` (its ``Recorder`` then removes that run's files); a resumed run
    refuses a finished one.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = open(folder / ".lock", "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise ConfigError(f"run folder {folder} is in use by another psgrad process") from None
    _LOCKS[str(folder.resolve())] = lock
    held = [name for name in RUN_FILES if (folder / name).exists()]
    if fresh and held and not cfg.run.overwrite:
        release()
        raise ConfigError(f"run folder {folder} already holds a run ({', '.join(held)}): choose another run.name, "
                          f"continue it with --resume {folder}, or set run.overwrite=true")
    if not fresh and (folder / "summary.json").exists():
        release()
        raise ConfigError(f"run {folder} is finished (it has summary.json): nothing to resume")


def release():
    """Give up this process's claims on run folders."""
    while _LOCKS:
        _LOCKS.popitem()[1].close()


_LOCKS = {}  # run folder -> its open lock file, held while this process runs in it (one at a time)


def read_metrics(run_dir):
    """The rows of a run folder's metrics.csv as dicts of floats (a column empty in a row is left out)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no metrics.csv (is it a psgrad run folder?)")
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return [{k: float(v) for k, v in r.items() if v != ""} for r in rows]


def read_journal(path):
    """The records of a journal (one JSON object per line)."""
    with open(path) as f:
        try:
            return [json.loads(line) for line in f]
        except json.JSONDecodeError as e:
            raise ConfigError(f"cannot resume: {path} is corrupt ({e})") from None


def tensor_bits(infos):
    """Payload bits summed per tensor (and framing) over the run, when the scheme compresses per tensor."""
    totals = {}
    for i in infos:
        for k, v in i.items():
            if k.startswith("bits/"):
                totals[k[5:]] = totals.get(k[5:], 0) + int(v)
    return {"tensor_payload_bits": totals} if totals else {}


def infos_summary(infos):
    """Means of the numeric per-agent scheme metrics over the whole run (e.g. TPC's trigger rate)."""
    keys = sorted({k for i in infos for k in i} - {"round", "agent"})
    out = {}
    for k in keys:
        vals = [float(i[k]) for i in infos if k in i]
        if vals:
            out[f"mean_{k}"] = sum(vals) / len(vals)
    return out


def summary_line(s):
    """The end-of-run report: five lines, each under 100 columns (but for a long results path)."""
    final = ", ".join(f"{k} {v:.4g}" for k, v in s["final"].items())
    times = ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in s["timings_s"].items() if isinstance(v, float))
    return (f"done: {s['rounds']} rounds of {s['scheme']}/{s['codec']} on {s['task']} (d={s['d']}, "
            f"{s['agents']} agents); results in {s['dir']}\n"
            f"final: {final}\n"
            f"uplink: {units.bits(s['uplink_payload_bits'])} of payload ({s['bits_per_coordinate']:.3g} "
            f"bits/coordinate, x{s['compression_vs_fp32']:.1f} fewer than fp32), "
            f"{units.si(s['uplink_wire_bytes'])}B on the wire\n"
            f"downlink ({s['downlink']}): {units.bits(s['downlink_payload_bits'])} of payload; total "
            f"{units.bits(s['total_payload_bits'])}\n"
            f"time: {times}")
