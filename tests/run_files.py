"""Reading a run's result files in tests."""
import csv


def rows(path):
    """A results CSV's rows as dicts, without ``time_s`` (wall clock, the one column that differs between
    otherwise identical runs)."""
    with open(path) as f:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(f)]
