"""A run folder is claimed before anything in it changes: reused names, finished runs, tampered journals, locks."""
import fcntl

import pytest

import psgrad
from psgrad.runtime.loop import Stopped


def job(tmp_path, **run):
    return {"run": {"results_dir": str(tmp_path), "name": "r", "log_every": 1000, "rounds": 4, "workers": 2,
                    "checkpoint_every": 2, **run}, "scheme": {"name": "ef21", "codec": "topk"}}


def quiet(*args, **kwargs):
    return psgrad.run(*args, local=True, log=lambda line: None, **kwargs)


class StopAt:
    """Asks to stop once ``rounds`` rounds have been recorded (checked at each round boundary)."""

    def __init__(self, folder, rounds):
        self.metrics, self.rounds = folder / "metrics.csv", rounds

    @property
    def requested(self):
        return self.metrics.exists() and len(self.metrics.read_text().splitlines()) > self.rounds + 1


def stopped_run(tmp_path):
    with pytest.raises(Stopped):
        quiet(job(tmp_path), stop=StopAt(tmp_path / "r", 3))
    return tmp_path / "r"


def test_a_fresh_run_refuses_a_folder_that_holds_a_run_and_leaves_it_untouched(tmp_path):
    quiet(job(tmp_path))
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()}
    with pytest.raises(psgrad.ConfigError, match="already holds a run .* set run.overwrite=true"):
        quiet(job(tmp_path))
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()} == before


def test_overwrite_replaces_the_run_and_drops_its_checkpoint(tmp_path):
    folder = stopped_run(tmp_path)
    assert (folder / "checkpoint.npz").exists()
    quiet(job(tmp_path, overwrite=True, checkpoint_every=0))
    assert not (folder / "checkpoint.npz").exists() and (folder / "summary.json").exists()


def test_resuming_a_finished_run_says_it_is_finished(tmp_path):
    quiet(job(tmp_path))
    with pytest.raises(psgrad.ConfigError, match="is finished"):
        quiet(resume=tmp_path / "r")


@pytest.mark.parametrize("name", ["metrics.csv", "messages.jsonl"])
def test_a_journal_changed_before_the_checkpoint_is_refused_before_any_file_is_cut(tmp_path, name):
    folder = stopped_run(tmp_path)
    path = folder / name
    data = bytearray(path.read_bytes())
    i = data.index(b"1", 40)  # a digit in the part the checkpoint covers
    data[i:i + 1] = b"7"
    path.write_bytes(bytes(data))
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    with pytest.raises(psgrad.ConfigError, match=f"{name} was changed after the checkpoint"):
        quiet(resume=folder)
    assert {p.name: p.stat().st_size for p in folder.iterdir()} == sizes


def test_a_zeroed_byte_in_a_journal_is_a_config_error_not_a_decode_crash(tmp_path):
    folder = stopped_run(tmp_path)
    path = folder / "messages.jsonl"
    data = bytearray(path.read_bytes())
    data[5] = 0
    path.write_bytes(bytes(data))
    with pytest.raises(psgrad.ConfigError, match="changed after the checkpoint"):
        quiet(resume=folder)


def test_the_resumed_run_equals_an_uninterrupted_one(tmp_path):
    folder = stopped_run(tmp_path / "a")
    resumed = quiet(resume=folder)
    whole = quiet(job(tmp_path / "b"))
    assert resumed.summary["uplink_payload_bits"] == whole.summary["uplink_payload_bits"]
    assert (folder / "metrics.csv").read_text().count("\n") == (tmp_path / "b" / "r" / "metrics.csv").read_text().count("\n")


def test_a_folder_locked_by_another_process_is_refused(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    with open(folder / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # flock locks belong to the open file: a second open in this process conflicts like another process
        with pytest.raises(psgrad.ConfigError, match="in use by another psgrad process"):
            quiet(job(tmp_path))
