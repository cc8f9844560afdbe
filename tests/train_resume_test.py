"""Training runs on a tiny synthetic dataset: resume after SIGKILL, --deterministic,
MirroredStrategy, a truncated shard. A module of their own, so that pytest-xdist runs them beside
the quickstart training of tests/train_test.py."""

import json
import os
import re
import signal
import time

import numpy as np
import pytest

from tests.conftest import synthetic_records, truncated_copy
from tests.helpers import run_module, start_module
from tests.train_test import run, train_command


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return synthetic_records(tmp_path_factory.mktemp("tiny"), num_train=48, num_test=16,
                             num_frames=34, height=64, width=86, seed=1)


# The quickstart's model on a shorter, smaller input (two 16-frame clips of 32x32 crops, a
# quarter of its compute): these tests check how runs start, stop and resume, not what they
# learn. Float32 as given, not probed (the probe is train_test's).
SMALL = ("--sample_length=32", "--num_frames=32", "--crop_size=32", "--mixed_precision=none")


def small_command(data_dir, model_dir, *extra):
    return train_command(data_dir, model_dir, *SMALL, *extra)


def start(cmd, log):
    """`cmd` (`python -m module ...`) started, its output written to `log`: a child of the
    command server, which a signal ends as it ends a new interpreter (`helpers.start_module`;
    the interpreter's own ~6 s of imports saved)."""
    return start_module(cmd[2], *cmd[3:], log=str(log))


def test_killed_run_resumes_from_the_last_finished_epoch(tiny_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    # No export at the end (what this test checks ends with the final evaluation; export after
    # training: tests/train_test.py, and after a resumed run tests/multi_worker_test.py).
    cmd = small_command(tiny_dir, model_dir, "--epochs=3", "--batch_size=4",
                        "--noevaluate_before_training", "--noexport_after_training")
    proc = start(cmd, tmp_path / "killed.log")
    first_epoch = os.path.join(model_dir, "metrics", "epoch_001.json")
    backup_meta = os.path.join(model_dir, "backup", "training_metadata.json")
    deadline = time.time() + 600
    while not (os.path.exists(first_epoch) and os.path.exists(backup_meta)):
        assert proc.poll() is None, "training ended before it could be interrupted"
        assert time.time() < deadline
        time.sleep(0.2)
    time.sleep(0.5)  # Into epoch 2.
    assert proc.poll() is None, "training ended before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(model_dir, "metrics", "epoch_003.json"))
    first_mtime = os.path.getmtime(first_epoch)

    stdout = run(cmd)
    # Killed in epoch 2 (or, on a fast machine, just after it): training goes on from there.
    resumed = re.search(r"Resuming .* after epoch (\d+) of 3", stdout)
    assert resumed and int(resumed.group(1)) in (1, 2), stdout[-2000:]
    assert os.path.getmtime(first_epoch) == first_mtime  # Epoch 1 was not trained again.
    for epoch in (2, 3):
        assert os.path.exists(os.path.join(model_dir, "metrics", f"epoch_{epoch:03d}.json"))
    with open(os.path.join(model_dir, "final_metrics.json")) as f:
        assert json.load(f)["metrics"]["num_samples"] == 16


def test_deterministic_runs_repeat_exactly(tiny_dir, tmp_path):
    """--deterministic: two runs of the same flags (started side by side, one intra-op thread
    each under xdist) train on the same stream and end with the same losses and predictions.
    Without it the training stream's order follows thread timing (see the option's help).
    The precision is given: `auto` probes each run on its own, and two probes side by side on a
    CPU where bf16 and float32 train about as fast (a Zen 4) chose differently."""
    def command(name):
        return small_command(tiny_dir, str(tmp_path / name), "--epochs=1",
                             "--steps_per_epoch=3", "--batch_size=4", "--val_fraction=0",
                             "--deterministic", "--noevaluate_before_training",
                             "--noexport_after_training")
    logs = [tmp_path / f"{name}.log" for name in ("a", "b")]
    procs = [start(command(name), log) for name, log in zip(("a", "b"), logs)]
    for proc, log in zip(procs, logs):
        proc.wait(timeout=900)
        assert proc.returncode == 0, log.read_text()[-5000:]
    runs = []
    for name in ("a", "b"):
        with open(tmp_path / name / "metrics" / "epoch_001.json") as f:
            train = json.load(f)["train"]
        with open(tmp_path / name / "test_predictions.csv") as f:
            runs.append((train, f.read()))
    assert runs[0][0]["loss"] == runs[1][0]["loss"], (runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    assert len(runs[0][1].splitlines()) == 17  # header + the 16 test dives


def test_mirrored_strategy_on_two_logical_cpus(tiny_dir, tmp_path):
    """Trains (two steps of a batch split over the replicas: what the strategy changes is the
    step, not how many there are), validates, evaluates and exports under the strategy."""
    model_dir = str(tmp_path / "mirrored")
    stdout = run(small_command(tiny_dir, model_dir, "--epochs=1", "--batch_size=4",
                               "--steps_per_epoch=2", "--distribution=mirrored",
                               "--cpu_replicas=2", "--noevaluate_before_training"))
    assert "MirroredStrategy with 2 replica(s)" in stdout
    with open(os.path.join(model_dir, "metrics", "epoch_001.json")) as f:
        record = json.load(f)
    assert np.isfinite(record["train"]["loss"])


def test_truncated_shard_is_named(tiny_dir, tmp_path):
    broken = truncated_copy(tiny_dir, str(tmp_path / "broken"), "train-00001-of-00002.tfrecord",
                            keep=2 / 3)
    cmd = small_command(broken, str(tmp_path / "run"), "--epochs=1")
    proc = run_module(cmd[2], *cmd[3:], timeout=600)
    assert proc.returncode != 0
    assert "training data cannot be read" in proc.stderr
    assert "train-00001-of-00002.tfrecord: truncated or corrupt after" in proc.stderr
