"""The files of a run folder (`--model_dir`), written atomically so that a run killed at any
moment leaves either the old file or the new one.

  flags.txt                     effective flags
  backup/                       resumable state (Keras BackupAndRestore)
  last.weights.h5               weights after the last finished epoch
  best.weights.h5, best.json    the checkpoint chosen on the validation split, and why
  metrics/epoch_NNN.json        each epoch's metrics (epoch_000: the untrained model)
  final_metrics.json, test_*    the final evaluation (`aqa_tf.training.evaluation.Evaluator.report`)
  run.lock                      held by the training run that writes the folder (`lock`)
"""

import datetime
import fcntl
import json
import os
import socket
from typing import IO, Any, Dict, Optional

import keras

from aqa_tf.config import ConfigError

FLAGS_FILE = "flags.txt"
BEST_WEIGHTS = "best.weights.h5"
LAST_WEIGHTS = "last.weights.h5"
BEST_INFO = "best.json"
BACKUP_DIR = "backup"
METRICS_DIR = "metrics"
LOGS_DIR = "logs"
FINAL_METRICS = "final_metrics.json"
LOCK_FILE = "run.lock"


def write_json(path: str, data: Any):
    """Writes `data` as JSON, atomically."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def save_weights(model: keras.Model, path: str):
    """`model.save_weights(path)`, atomically."""
    tmp = path[: -len(".weights.h5")] + ".tmp.weights.h5"
    model.save_weights(tmp, overwrite=True)
    os.replace(tmp, path)


def lock(model_dir: str) -> IO:
    """Makes this process the only training run writing `model_dir`, until it ends: returns the
    open lock file (keep it open). The lock is the operating system's (`flock`), so a run that
    is killed, even with SIGKILL, releases it; the file names the holder for the message.

    Raises:
      ConfigError: another process holds the folder (named by host and PID), or the folder
        cannot be written.
    """
    path = os.path.join(model_dir, LOCK_FILE)
    try:
        os.makedirs(model_dir, exist_ok=True)
        handle = open(path, "a+")
    except OSError as error:
        raise ConfigError(f"--model_dir={model_dir}: cannot write there "
                          f"({error.strerror})") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(f"--model_dir={model_dir} is in use by another training run "
                          f"({holder}): wait for it to end, or give another --model_dir") from None
    handle.seek(0)
    handle.truncate()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    handle.write(f"host {socket.gethostname()}, pid {os.getpid()}, since {started}\n")
    handle.flush()
    return handle


def resolve_checkpoint(path: str) -> str:
    """A `.weights.h5` file, or a run folder (its best checkpoint)."""
    if os.path.isdir(path):
        path = os.path.join(path, BEST_WEIGHTS)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return path


class RunFolder:
    """Paths and state of one run folder (created if absent)."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.join(path, METRICS_DIR), exist_ok=True)

    def file(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    def epoch_metrics(self, epoch: int) -> str:
        """`metrics/epoch_NNN.json` of epoch `epoch` (0: before training)."""
        return self.file(METRICS_DIR, f"epoch_{epoch:03d}.json")

    def best_info(self) -> Optional[Dict]:
        """What `best.json` says of the chosen checkpoint (epoch, criterion), if any."""
        path = self.file(BEST_INFO)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def completed_epochs(self) -> int:
        """Epochs the resumable state has finished (0 for a new run)."""
        path = self.file(BACKUP_DIR, "training_metadata.json")
        if not os.path.exists(path):
            return 0
        with open(path) as f:
            return int(json.load(f)["epoch"])
