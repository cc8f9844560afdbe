"""A training run: data, model, optimizer, resumable fit, final evaluation and export.

`aqa_tf.train` is the command-line entry; everything here takes config objects. Construction
reads as its steps: check the data, build and compile the model, build the evaluator, build the
training data.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, Optional, Tuple

import keras
import tensorflow as tf

from aqa_tf.training import callbacks as callbacks_lib
from aqa_tf import devices
from aqa_tf.training import evaluation
from aqa_tf.serving import export_lib
from aqa_tf.training import optim
from aqa_tf.training import run_folder
from aqa_tf.config import (ConfigError, DataConfig, EvalConfig, ExportConfig, ModelConfig,
                           TrainConfig)
from aqa_tf.data import exemplars
from aqa_tf.data import pipeline
from aqa_tf.data import statistics
from aqa_tf.data import shards
from aqa_tf.models import aqa_model
from aqa_tf.models.heads import build_heads
from aqa_tf.weights import sources


def select_model_io(dataset: tf.data.Dataset, model: keras.Model) -> tf.data.Dataset:
    """Keeps only the inputs the model has and the targets its losses read (e.g. no class
    targets for STL), each under its output's name (`Head.target_keys`: a score distribution
    is trained against the score; `Head.untrained_outputs` read none)."""
    heads = getattr(aqa_model.owner(model), "heads", {}).values()
    untrained = {name for head in heads for name in head.untrained_outputs}
    source = {out: key for head in heads for out, key in head.target_keys.items()}
    input_names = list(model.input.keys())
    output_names = [name for name in model.output.keys() if name not in untrained]

    def select(inputs, targets):
        return ({k: inputs[k] for k in input_names},
                {k: targets[source.get(k, k)] for k in output_names})

    return dataset.map(select, num_parallel_calls=tf.data.AUTOTUNE)


class TrainingRun:
    """One training run in `train_config.model_dir`: builds data and model, fits with resumable
    checkpoints, and gives the final (honest) evaluation of the chosen checkpoint.

    Build it under the dtype policy and seed of the run (`devices.configure_run`).

    On a multi-worker cluster every worker builds one and calls `fit`; only the chief
    (`is_chief`) writes the run folder, evaluates and exports. The other workers keep their
    files in a temporary folder (`remove_worker_folder`), as Keras's multi-worker examples do,
    starting from a copy of the chief's backup so that they resume from the same epoch.
    """

    def __init__(self, data_config: DataConfig, model_config: ModelConfig,
                 train_config: TrainConfig, eval_config: EvalConfig = EvalConfig(),
                 strategy: Optional[tf.distribute.Strategy] = None):
        self.data_config, self.model_config = data_config, model_config
        self.train_config, self.eval_config = train_config, eval_config
        self.strategy = strategy or tf.distribute.get_strategy()
        self.is_chief = devices.is_chief(self.strategy)
        self.multi_worker = devices.is_multi_worker(self.strategy)
        self._check_distribution()
        self.folder = run_folder.RunFolder(train_config.model_dir if self.is_chief
                                           else self._worker_folder())
        self.has_val = data_config.val_fraction > 0
        self.score_range = self._check_data()
        self.data_config = data_config = statistics.with_action_statistics(data_config)
        self.num_train_examples = pipeline.num_examples(data_config, "train")
        pairs = {k: v for h in build_heads(model_config, data_config).values()
                 for k, v in h.dataset_options.items()}.get("exemplar_pairs")
        if pairs:  # one element per pair of training samples (heads.core)
            self.num_train_examples = exemplars.num_pairs(data_config, pairs[0])
        self.model = self._build_model()
        self.evaluator = evaluation.Evaluator(self.model, data_config, self.score_range,
                                              eval_config, train_config.jit_compile)
        self.train_data = self._build_training_data()

    # --- construction steps ---------------------------------------------------------------------
    def _check_distribution(self):
        replicas = self.strategy.num_replicas_in_sync
        if self.multi_worker and self.data_config.batch_size % replicas:
            raise ConfigError(
                f"batch_size={self.data_config.batch_size} must be a multiple of the {replicas} "
                "replicas of the cluster: each trains on an equal part of every (global) batch")

    def _worker_folder(self) -> str:
        """A temporary run folder of a non-chief worker, holding a copy of the chief's backup
        (taken before this worker joins a training step, so before the chief can back up a
        newer epoch)."""
        path = tempfile.mkdtemp(prefix=f"aqa_tf_{devices.worker_name(self.strategy)}_")
        backup = os.path.join(self.train_config.model_dir, run_folder.BACKUP_DIR)
        if os.path.isdir(backup):
            shutil.copytree(backup, os.path.join(path, run_folder.BACKUP_DIR))
        return path

    def remove_worker_folder(self):
        """Deletes the temporary folder of a non-chief worker (the chief's run folder stays)."""
        if not self.is_chief:
            shutil.rmtree(self.folder.path, ignore_errors=True)

    def _check_data(self) -> Tuple[float, float]:
        """Reads the scores of both splits (every record, no frames): a shard that cannot be
        read stops the run here, named; checks the stored frame size against the config.
        Returns the training score range."""
        try:
            statistics.read_scores(self.data_config, self.data_config.test_split)
            pipeline.check_stored_size(self.data_config)
            return statistics.score_range(self.data_config)
        except tf.errors.DataLossError as error:
            raise shards.DataError(self._describe_bad_shards(error)) from error

    @property
    def steps_per_epoch(self) -> int:
        return (self.train_config.steps_per_epoch or
                max(1, self.num_train_examples // self.data_config.batch_size))

    def _build_model(self) -> keras.Model:
        """The model, its initial weights, frozen backbone and optimizer, compiled under the
        strategy. A resumed run restores its own state over the initial weights."""
        config = self.train_config
        with self.strategy.scope():
            model = aqa_model.build_aqa_model(self.model_config, self.data_config)
            backbone = aqa_model.backbone_of(model)
            if config.init_weights:
                sources.load_initial_weights(model, config.init_weights,
                                             config.init_weights_source,
                                             self.model_config.backbone)
                print(f"Initialised from {config.init_weights} ({config.init_weights_source})",
                      flush=True)
            if config.freeze_backbone:
                backbone.trainable = False
            optimizer = optim.make_optimizer(config, backbone, self.steps_per_epoch)
            optim.compile_model(model, self.model_config, config, optimizer)
        return model

    def _build_training_data(self) -> tf.data.Dataset:
        # On a cluster every worker reads the whole stream and keeps its part of each global
        # batch (auto-shard policy DATA, below): the streams must be the same sample for sample,
        # so their order may not depend on thread timing. --deterministic asks for the same.
        ordered = self.multi_worker or self.train_config.deterministic
        data = pipeline.build_dataset(self.data_config, "train", training=True,
                                      **self.evaluator.dataset_options,
                                      deterministic=True if ordered else None)
        # Known length: the progress bar shows the epoch's total from the first epoch on.
        data = data.apply(tf.data.experimental.assert_cardinality(
            self.num_train_examples // self.data_config.batch_size))
        data = select_model_io(data, self.model)
        data = data.repeat() if self.train_config.steps_per_epoch else data
        if self.multi_worker:
            # DATA, not left to AUTO (which shards by file where it can: each worker would read
            # only its shards and form batches of its own): `fit` splits every batch of the
            # stream across the replicas, so training sees the batches one worker would.
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = (
                tf.data.experimental.AutoShardPolicy.DATA)
            data = data.with_options(options)
        return data

    # --- training ---------------------------------------------------------------------------------
    def callbacks(self) -> list:
        backup = callbacks_lib.Backup(
            self.folder.file(run_folder.BACKUP_DIR),
            save_freq=self.train_config.backup_every_steps or "epoch", delete_checkpoint=False)
        heads = [c for h in aqa_model.owner(self.model).heads.values()
                 for c in h.callbacks(self.train_config)]
        if not self.is_chief:  # it restores and backs up (in its folder); the rest is the chief's
            return heads + [backup]
        # The epoch's evaluation (metrics JSON, last/best weights) is written before the backup
        # marks the epoch done: a run killed in between trains that epoch again rather than
        # losing its metrics.
        return heads + [
            callbacks_lib.EpochEvaluation(self.folder, self.evaluator.evaluate, self.has_val,
                                          self.train_config.test_every_epoch,
                                          self.train_config.select_on),
            backup,
            keras.callbacks.TensorBoard(self.folder.file(run_folder.LOGS_DIR)),
        ]

    def evaluate_untrained(self) -> Optional[Dict]:
        """Test metrics of the freshly initialised model (`metrics/epoch_000.json`): the
        baseline that training must beat. Skipped when resuming."""
        path = self.folder.epoch_metrics(0)
        if self.folder.completed_epochs() or os.path.exists(path):
            return None
        record = {"epoch": 0, "test": self.evaluator.evaluate("test")}
        run_folder.write_json(path, record)
        print(f"untrained model: test spearman {record['test']['spearman']:.4f}", flush=True)
        return record

    def fit(self, verbose: Optional[int] = None) -> keras.callbacks.History:
        """Trains to `epochs`, resuming after the last finished epoch of the run folder."""
        done = self.folder.completed_epochs()
        if done:
            print(f"Resuming {self.train_config.model_dir} after epoch {done} of "
                  f"{self.train_config.epochs}", flush=True)
        try:
            return self.model.fit(
                self.train_data, epochs=self.train_config.epochs,
                steps_per_epoch=self.train_config.steps_per_epoch or None,
                callbacks=self.callbacks(),
                verbose=self.train_config.verbose if verbose is None else verbose)
        except tf.errors.DataLossError as error:
            raise shards.DataError(self._describe_bad_shards(error)) from error

    def _describe_bad_shards(self, error: tf.errors.OpError) -> str:
        """Names the shards that cannot be read (finished epochs stay in the backup)."""
        patterns = [pattern for split in (self.data_config.train_split,
                                          self.data_config.test_split)
                    for pattern in shards.shard_patterns(self.data_config.data_dir, split)]
        problems = shards.check_shards(patterns)
        return ("training data cannot be read: " + error.message.splitlines()[0] +
                "\n  " + "\n  ".join(problems or ["(no shard-level problem found)"]) +
                "\nFix or re-create these shards; re-running resumes after the last "
                "finished epoch.")

    # --- results ----------------------------------------------------------------------------------
    def final_evaluation(self) -> Dict:
        """Test metrics of the checkpoint chosen on the validation split (or the last epoch),
        written as `final_metrics.json`, `test_predictions.csv`, `test_scatter.png` (and
        `test_captions.csv`)."""
        info = self.folder.best_info()
        self.model.load_weights(self.folder.file(run_folder.BEST_WEIGHTS))
        return self.evaluator.report(
            "test", self.folder.file(run_folder.FINAL_METRICS), self.folder.file("test"),
            checkpoint_label=f"epoch {info['epoch']} checkpoint",
            checkpoint_description=(f"checkpoint of epoch {info['epoch']}, chosen on "
                                    f"{info['selected_on']} (the test split was not used to "
                                    "choose it)"),
            checkpoint_epoch=info["epoch"], selected_on=info["selected_on"])

    def export(self, export_config: ExportConfig, flags_file: str = "") -> str:
        """SavedModel of the loaded (best) weights (`export_lib.export_trained_model`).

        The SavedModel's serving functions are TensorFlow (decoding, resizing, windowing
        around the model): under another Keras backend (JAX) the export runs `aqa_tf.export`
        in a TensorFlow process on the run's flagfile and best weights (`.weights.h5` files
        are the same on every backend)."""
        if keras.backend.backend() == "tensorflow":
            return export_lib.export_trained_model(
                self.model, self.model_config, self.data_config, export_config,
                self.folder.path, self.eval_config, flags_file,
                score_range=self.score_range)
        if not flags_file:
            raise ConfigError(f"exporting a model trained on Keras's {keras.backend.backend()} "
                              "backend needs the run's flagfile (aqa_tf.export runs on "
                              "TensorFlow)")
        path = export_config.export_path(self.folder.path)
        name = os.path.basename(os.path.dirname(path))
        command = [sys.executable, "-m", "aqa_tf.export", f"--flagfile={flags_file}",
                   f"--checkpoint={self.folder.file(run_folder.BEST_WEIGHTS)}",
                   f"--experiment_name={name}"]
        print(f"Exporting on TensorFlow (the SavedModel's serving functions are TensorFlow): "
              f"{' '.join(command)}", flush=True)
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        if subprocess.run(command, env=env).returncode:
            raise ConfigError(f"the TensorFlow export failed (above); the trained weights are "
                              f"in {self.folder.file(run_folder.BEST_WEIGHTS)}")
        return path
