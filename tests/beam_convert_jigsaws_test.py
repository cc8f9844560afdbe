"""The JIGSAWS converter as an Apache Beam pipeline (`tfrecords_tools.beam_pipeline`, issue 29):
on a synthetic JIGSAWS release (two tasks of 3 trials, one trial's capture1 video corrupt), the
DirectRunner (2 worker processes) writes the records that the process pool (`--runner=local`)
writes, every field of every record equal and each in the same task folder and fold, reports the
bad trial by its key with the same reason, and leaves per task and fold shards named and
numbered as `aqa_tf.data.shards` reads them. Apache Beam is optional (requirements-beam.txt):
without it the Beam test skips, and asking for a Beam runner is one line naming the install
command."""

import collections
import json
import os
import pickle
import re

import pytest

from aqa_tf import beam_lib
from aqa_tf.config import ConfigError
from aqa_tf.data import jigsaws as layout
from aqa_tf.data import shards as shards_lib
from aqa_tf.data import synthetic
from tests.helpers import assert_same_records, run_cli, user_error
from tfrecords_tools import jigsaws

TASKS = ("Suturing", "Knot_Tying")
T, H, W, NUM_FRAMES = 12, 24, 64, 6  # videos of about T frames, stored as NUM_FRAMES of H x W
TRIALS_PER_TASK = 3  # folds of 1, 1, 1, 0 trials; Suturing's made 2, 1, 0, 0 (`raw`)
NUM_SHARDS = 2  # per fold: Suturing's fold of two trials gets two shards, one emptied by the bad


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """A synthetic release of `TASKS` (label.pkl, splits.pkl) in five non-empty folds (each a
    split of the Beam pipeline, which costs seconds of stages); returns (root, the bad trial:
    the first trial of Suturing's two-trial fold, whose capture1 video is not a video)."""
    root = str(tmp_path_factory.mktemp("jigsaws") / "root")
    synthetic.write_jigsaws_tree(root, TRIALS_PER_TASK, num_frames=T, height=H, width=W, seed=5,
                                 tasks=TASKS)
    path = os.path.join(root, "splits.pkl")
    with open(path, "rb") as f:
        splits = pickle.load(f)
    folds = [fold for fold in splits["Suturing"] if fold]
    splits["Suturing"] = [folds[0] + folds[2], folds[1], [], []]
    with open(path, "wb") as f:
        pickle.dump(splits, f)
    bad = splits["Suturing"][0][0]
    with open(layout.video_path(root, "Suturing", bad), "wb") as f:
        f.write(b"RIFF, but not a video at all" * 10)
    return root, bad


def _check_shards(out, written):
    """Per task folder, only shards, named as `aqa_tf.data.shards` names them: per fold that
    has records 1 to min(`NUM_SHARDS`, records) of them, numbered among themselves, none empty
    (`written`: `<Task>/fold<k>` -> records); no other fold, nothing of Beam's left over."""
    for task in TASKS:
        names = sorted(os.listdir(layout.task_dir(out, task)))
        by_fold = collections.defaultdict(list)
        for name in names:
            by_fold[name.split("-")[0]].append(name)
        assert sorted(by_fold) == sorted(layout.fold_split(k) for k in range(layout.NUM_FOLDS)
                                         if written[f"{task}/{layout.fold_split(k)}"]), names
        for fold, mine in by_fold.items():
            assert 1 <= len(mine) <= min(NUM_SHARDS, written[f"{task}/{fold}"]), mine
            assert mine == [shards_lib.shard_name(fold, i, len(mine)) for i in range(len(mine))]
            assert all(os.path.getsize(os.path.join(out, task, n)) > 0 for n in mine)


def test_the_beam_command_writes_the_records_of_the_process_pool(raw, tmp_path):
    """`python -m tfrecords_tools.jigsaws --runner=DirectRunner` (2 worker processes, which
    import the converter's functions by module name, not from `__main__`): the bad trial's
    SKIPPED line and exit status 1, the report and folds file of `--runner=local` (in this
    process), and its records, every field equal, in the same task folder and fold. One Beam
    run; a bad Beam option is one line (exit 2) before anything is read."""
    pytest.importorskip("apache_beam")
    root, bad = raw
    sizes = dict(num_frames=NUM_FRAMES, width=W, height=H, num_shards_per_fold=NUM_SHARDS)
    local_dir = str(tmp_path / "local")
    local = jigsaws.convert(root, os.path.join(root, "splits.pkl"), local_dir,
                            labels_path=os.path.join(root, "label.pkl"), tasks=TASKS,
                            runner="local", num_workers=1, progress=False, **sizes)
    assert list(local.skipped) == [bad] and "capture1 video" in local.skipped[bad]
    assert sum(local.written.values()) == len(TASKS) * TRIALS_PER_TASK - 1
    assert {k: n for k, n in local.written.items() if k.startswith("Suturing/")} == {
        "Suturing/fold0": 1, "Suturing/fold1": 1, "Suturing/fold2": 0, "Suturing/fold3": 0}
    flags = [f"--root={root}", f"--splits={root}/splits.pkl", f"--labels={root}/label.pkl",
             f"--tasks={','.join(TASKS)}", *(f"--{k}={v}" for k, v in sizes.items()),
             "--num_workers=2", "--runner=DirectRunner"]
    out = str(tmp_path / "beam")
    proc = run_cli("tfrecords_tools.jigsaws", *flags, f"--out_dir={out}", expect=1)
    assert f"SKIPPED {bad}: {local.skipped[bad]}" in proc.stderr
    assert "1 samples SKIPPED" in proc.stdout and f"    {bad}: " in proc.stdout
    with open(os.path.join(out, "conversion_report.json")) as f:
        report = json.load(f)
    assert report["skipped"] == local.skipped and report["written"] == local.written
    assert report["notes"] == json.loads(json.dumps(local.notes))
    with open(os.path.join(out, layout.FOLDS_FILE)) as f, \
            open(os.path.join(local_dir, layout.FOLDS_FILE)) as g:
        assert json.load(f) == json.load(g)

    expected = assert_same_records(local_dir, out)
    assert bad not in expected and len(expected) == len(TASKS) * TRIALS_PER_TASK - 1

    assert sorted(os.listdir(out)) == sorted(os.listdir(local_dir)) == sorted(
        [*TASKS, "conversion_report.json", layout.FOLDS_FILE])
    _check_shards(out, local.written)
    assert not [n for n in os.listdir(tmp_path) if ".partial-" in n]

    user_error(run_cli("tfrecords_tools.jigsaws", *flags, f"--out_dir={tmp_path / 'bad'}",
                       "--beam_pipeline_options=--direct_num_workers=many", expect=2),
               "--beam_pipeline_options", "invalid int value")
    assert not os.path.exists(tmp_path / "bad")


def test_a_beam_runner_without_beam_is_one_line(tmp_path, monkeypatch):
    """Runs everywhere (Beam installed or not): the refusal names the install command, before
    the splits file is read (it does not exist here) or any output folder is made."""
    monkeypatch.setattr(beam_lib, "beam_available", lambda: False)
    with pytest.raises(ConfigError, match=re.escape(
            "--runner=DirectRunner needs Apache Beam, which is not installed: "
            "pip install -r requirements-beam.txt")):
        jigsaws.convert(str(tmp_path), str(tmp_path / "splits.pkl"), str(tmp_path / "out"),
                        tasks=TASKS, runner="DirectRunner", progress=False)
    assert not os.path.exists(tmp_path / "out")
