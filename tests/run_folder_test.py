"""The run folder's lock: one training run per `--model_dir`, released by a killed run."""

import os
import signal
import subprocess
import sys
import time

import pytest

from aqa_tf.config import ConfigError
from aqa_tf.training import run_folder
from tests.helpers import REPO_ROOT, run_cli, user_error

HOLD = ("import sys, time; from aqa_tf.training import run_folder; "
        "lock = run_folder.lock(sys.argv[1]); print('locked', flush=True); time.sleep(600)")


def _holder(model_dir: str) -> subprocess.Popen:
    """A process that holds `model_dir`'s lock until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, model_dir], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_training_on_a_folder_in_use_is_refused(tmp_path):
    """Issue 24, case 2: before, two trainings on one --model_dir both ran to the end and
    overwrote each other's files."""
    model_dir = str(tmp_path / "run")
    holder = _holder(model_dir)
    try:
        with pytest.raises(ConfigError, match=f"pid {holder.pid}"):
            run_folder.lock(model_dir)
        proc = run_cli("aqa_tf.train", "--flagfile=configs/quickstart.cfg",
                       f"--model_dir={model_dir}", f"--data_dir={tmp_path / 'data'}",
                       "--nosynthesize_if_missing", expect=2)
        line = user_error(proc, f"--model_dir={model_dir} is in use by another training run",
                          f"pid {holder.pid}")
        print(line)
        # Refused before anything was written: no flags.txt, no dataset.
        assert sorted(os.listdir(model_dir)) == [run_folder.LOCK_FILE]
        assert not os.path.exists(tmp_path / "data")
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_run_leaves_no_stuck_lock(tmp_path):
    model_dir = str(tmp_path / "run")
    holder = _holder(model_dir)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    deadline = time.time() + 10
    while True:  # the kernel releases the lock with the process
        try:
            handle = run_folder.lock(model_dir)
            break
        except ConfigError:
            assert time.time() < deadline, "the lock of a killed process was not released"
            time.sleep(0.1)
    with open(os.path.join(model_dir, run_folder.LOCK_FILE)) as f:
        assert f"pid {os.getpid()}" in f.read()
    handle.close()


def test_a_model_dir_that_cannot_be_written_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=f"--model_dir={blocker}/run: cannot write there"):
        run_folder.lock(str(blocker / "run"))


def test_resuming_a_run_of_another_model_is_refused_and_keeps_its_flags(tmp_path):
    """A run folder whose backup another model saved (`--heads=score` there) and a command
    that builds another (`--heads=score,dive`): one line naming the option, exit status 2, and
    the folder's flags.txt still the run's. (Before: flags.txt was overwritten, then Keras's
    restore failed with a traceback.)"""
    model_dir = tmp_path / "run"
    (model_dir / run_folder.BACKUP_DIR).mkdir(parents=True)
    (model_dir / run_folder.BACKUP_DIR / "training_metadata.json").write_text(
        '{"epoch": 2, "batch": 0}')
    flags = "--heads=score\n--backbone=c3d\n"
    (model_dir / run_folder.FLAGS_FILE).write_text(flags)
    proc = run_cli("aqa_tf.train", "--flagfile=configs/quickstart.cfg", "--heads=score,dive",
                   "--backbone=c3d", f"--model_dir={model_dir}",
                   f"--data_dir={tmp_path / 'data'}", "--nosynthesize_if_missing", expect=2)
    line = user_error(proc, f"--model_dir={model_dir} holds a run of another model",
                      "--heads=score,dive (the run's: score)")
    print(line)
    assert "--backbone" not in line
    assert (model_dir / run_folder.FLAGS_FILE).read_text() == flags


def test_a_backup_of_another_model_is_one_line(tmp_path):
    """Where the flags agree but the saved state is another model's (a folder from an older
    version, or one whose flags.txt was edited), the restore names the backup folder."""
    import keras
    import numpy as np
    from aqa_tf.training import callbacks
    backup = tmp_path / "run" / run_folder.BACKUP_DIR
    backup.mkdir(parents=True)
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other.save_weights(str(backup / "latest.weights.h5"))
    (backup / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile("sgd", "mse")
    with pytest.raises(ConfigError, match=f"{backup}: cannot resume: its state is of another "
                                          "model than these options build"):
        model.fit(np.zeros((4, 4)), np.zeros((4, 3)), epochs=2, verbose=0,
                  callbacks=[callbacks.Backup(str(backup))])
