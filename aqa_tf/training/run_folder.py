"""The files of a run folder (`--model_dir`), written atomically so that a run killed at any
moment leaves either the old file or the new one.

  flags.txt                     effective flags
  backup/                       resumable state (Keras BackupAndRestore)
  last.weights.h5               weights after the last finished epoch
  best.weights.h5, best.json    the checkpoint chosen on the validation split, and why
  metrics/epoch_NNN.json        each epoch's metrics (epoch_000: the untrained model)
  final_metrics.json, test_*    the final evaluation (`aqa_tf.training.evaluation.Evaluator.report`)
"""

import json
import os
from typing import Any, Dict, Optional

import keras

FLAGS_FILE = "flags.txt"
BEST_WEIGHTS = "best.weights.h5"
LAST_WEIGHTS = "last.weights.h5"
BEST_INFO = "best.json"
BACKUP_DIR = "backup"
METRICS_DIR = "metrics"
LOGS_DIR = "logs"
FINAL_METRICS = "final_metrics.json"


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
