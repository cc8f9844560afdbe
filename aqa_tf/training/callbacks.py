"""Keras callbacks of the fit loop: per-epoch evaluation and the choice of the best checkpoint."""

import os
from typing import Callable, Dict, Optional

import keras

from aqa_tf.config import ConfigError
from aqa_tf.training import run_folder
from aqa_tf.registry import SELECTION_RULES


class Backup(keras.callbacks.BackupAndRestore):
    """Keras's BackupAndRestore, whose restore of a state that another model saved (a run
    folder reused with other options) is a ConfigError naming the folder, not a traceback."""

    def on_train_begin(self, logs=None):
        try:
            super().on_train_begin(logs)
        except ValueError as error:
            model_dir = os.path.dirname(os.path.abspath(self.backup_dir))
            raise ConfigError(
                f"{self.backup_dir}: cannot resume: its state is of another model than these "
                f"options build ({str(error).splitlines()[0]}); give another --model_dir, or "
                f"delete {model_dir} to start over") from None


class EpochEvaluation(keras.callbacks.Callback):
    """After every epoch: evaluates the validation and test splits over the whole set, writes
    `metrics/epoch_NNN.json`, saves `last.weights.h5`, and keeps `best.weights.h5` by the
    validation criterion `select_on` (by the last epoch when there is no validation split). The
    test split is reported (every epoch unless `test_every_epoch` is off and there is a
    validation split), never used for the choice. State survives restarts through `best.json`.

    Args:
      folder: the run folder.
      evaluate_split: split name -> metrics dict (`Evaluator.evaluate`).
      has_val: whether there is a validation split.
      test_every_epoch: also evaluate the test split every epoch.
      select_on: name of the selection rule (`registry.SELECTION_RULES`).
    """

    def __init__(self, folder: run_folder.RunFolder, evaluate_split: Callable[[str], Dict],
                 has_val: bool, test_every_epoch: bool = True, select_on: str = "spearman"):
        super().__init__()
        self.folder = folder
        self.evaluate_split = evaluate_split
        self.has_val = has_val
        self.rule = SELECTION_RULES.get(select_on, "select_on")
        self.splits = ("test",)
        if has_val:
            self.splits = ("val", "test") if test_every_epoch else ("val",)

    def on_epoch_end(self, epoch: int, logs: Optional[Dict] = None):
        logs = logs if logs is not None else {}
        record = {"epoch": epoch + 1, "train": {k: float(v) for k, v in logs.items()}}
        for split in self.splits:
            record[split] = self.evaluate_split(split)
            for name, value in record[split].items():
                if isinstance(value, (int, float)):  # not METEOR's "unavailable" reason
                    logs[f"{split}_{name.replace('/', '_')}"] = value
        run_folder.write_json(self.folder.epoch_metrics(epoch + 1), record)
        run_folder.save_weights(self.model, self.folder.file(run_folder.LAST_WEIGHTS))
        self._keep_if_best(epoch + 1, record)
        print(f"epoch {epoch + 1}: " + ", ".join(
            f"{split} spearman {record[split]['spearman']:.4f}" for split in self.splits),
            flush=True)

    def _keep_if_best(self, epoch: int, record: Dict):
        best = self.folder.best_info()
        criterion = self.rule.criterion(record["val"]) if self.has_val else None
        if best is None or not self.has_val or criterion > best["criterion"]:
            run_folder.save_weights(self.model, self.folder.file(run_folder.BEST_WEIGHTS))
            run_folder.write_json(self.folder.file(run_folder.BEST_INFO), {
                "epoch": epoch,
                "selected_on": (f"validation {self.rule.description}" if self.has_val
                                else "last epoch"),
                "criterion": criterion,
                "val_spearman": record["val"]["spearman"] if self.has_val else None})
