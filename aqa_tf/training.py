"""Training library: strategy, optimizer, compilation, per-epoch evaluation and checkpoints.

`aqa_tf.train` is the command-line entry; everything here takes config objects.
"""

import json
import os
from typing import Callable, Dict, Optional

import keras
import numpy as np
import tensorflow as tf

from aqa_tf import caption_metrics
from aqa_tf import losses as losses_lib
from aqa_tf import metrics as metrics_lib
from aqa_tf.config import DataConfig, ModelConfig, TrainConfig
from aqa_tf.data import features
from aqa_tf.data import pipeline

BEST_WEIGHTS = "best.weights.h5"
LAST_WEIGHTS = "last.weights.h5"
BEST_INFO = "best.json"
BACKUP_DIR = "backup"
METRICS_DIR = "metrics"


def setup_devices(cpu_replicas: int = 0):
    """Splits the CPU into `cpu_replicas` logical devices (before TF initialises its devices)."""
    if cpu_replicas > 1:
        cpus = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)


def make_strategy(distribution: str) -> tf.distribute.Strategy:
    """`default` (one device), `mirrored` (all local GPUs, or the logical CPUs when there is no
    GPU) or `multi_worker` (TF_CONFIG cluster)."""
    if distribution == "default":
        return tf.distribute.get_strategy()
    if distribution == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if distribution == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown distribution {distribution!r}")


@keras.saving.register_keras_serializable(package="aqa_tf")
class TwoRateAdam(keras.optimizers.Adam):
    """Adam with a separate learning rate for the backbone's variables (paper 002 trains the
    pretrained backbone and the new layers at different rates).

    `learning_rate` drives the new layers; backbone variables (registered with
    `set_backbone_variables`) step with `learning_rate * backbone_lr_multiplier`.
    """

    def __init__(self, backbone_lr_multiplier=1.0, **kwargs):
        super().__init__(**kwargs)
        self.backbone_lr_multiplier = float(backbone_lr_multiplier)
        self._backbone_ids = frozenset()

    def set_backbone_variables(self, variables):
        self._backbone_ids = frozenset(id(v) for v in variables)

    def update_step(self, gradient, variable, learning_rate):
        if id(variable) in self._backbone_ids and self.backbone_lr_multiplier != 1.0:
            learning_rate = learning_rate * self.backbone_lr_multiplier
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "backbone_lr_multiplier": self.backbone_lr_multiplier}


def make_optimizer(train_config: TrainConfig, backbone: keras.Model,
                   steps_per_epoch: int = 1) -> keras.optimizers.Optimizer:
    """Adam (paper 001), with a separate backbone rate when `backbone_learning_rate` is set.

    The schedule counts optimizer steps, which the checkpoints keep: a resumed run continues
    the decay where it stopped.
    """
    learning_rate = train_config.learning_rate
    if train_config.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            train_config.learning_rate, decay_steps=max(1, train_config.epochs * steps_per_epoch))
    if train_config.backbone_learning_rate is None:
        return keras.optimizers.Adam(learning_rate)
    optimizer = TwoRateAdam(
        learning_rate=learning_rate,
        backbone_lr_multiplier=train_config.backbone_learning_rate / train_config.learning_rate)
    optimizer.set_backbone_variables(backbone.trainable_variables)
    return optimizer


def compile_model(model: keras.Model, model_config: ModelConfig, train_config: TrainConfig,
                  optimizer: keras.optimizers.Optimizer):
    output_names = list(model.output.keys())
    losses, weights = losses_lib.build_losses(
        output_names, model_config.score_std, train_config.score_loss_weight,
        train_config.class_loss_weight, train_config.caption_loss_weight)
    model.compile(optimizer=optimizer, loss=losses, loss_weights=weights,
                  jit_compile=train_config.jit_compile)


def select_model_io(dataset: tf.data.Dataset, model: keras.Model) -> tf.data.Dataset:
    """Keeps only the inputs and targets the model has (e.g. no class targets for STL)."""
    input_names = list(model.input.keys())
    output_names = list(model.output.keys())

    def select(inputs, targets):
        return ({k: inputs[k] for k in input_names}, {k: targets[k] for k in output_names})

    return dataset.map(select, num_parallel_calls=tf.data.AUTOTUNE)


def read_scores(data_config: DataConfig, split: str) -> np.ndarray:
    """Final scores of a split, read from the record contexts only (no frame decoding)."""
    pattern = features.shard_pattern(data_config.data_dir, split)
    files = tf.io.gfile.glob(pattern)
    if not files:
        raise FileNotFoundError(f"no TFRecord shards match {pattern}")
    spec = {features.FINAL_SCORE: tf.io.FixedLenFeature([], tf.float32)}
    ds = tf.data.TFRecordDataset(sorted(files)).map(
        lambda s: tf.io.parse_single_sequence_example(s, context_features=spec)[0][
            features.FINAL_SCORE])
    scores = np.array([float(s) for s in ds.as_numpy_iterator()], np.float64)
    return scores[np.isfinite(scores) & (scores >= 0)]


class Predictor:
    """Runs a model over an evaluation dataset and collects keys, targets and outputs.

    Models with a caption head are run without their teacher-forced caption path; their
    captions are written by `caption_generator` (greedy or beam search) into
    `outputs["caption_ids"]`.
    """

    def __init__(self, model: keras.Model, jit_compile: bool = False, caption_generator=None):
        from aqa_tf.models import aqa_model
        self.model = aqa_model.inference_model(model)
        self.input_names = list(self.model.input.keys())
        self._infer = tf.function(lambda x: self.model(x, training=False),
                                  jit_compile=jit_compile, reduce_retracing=True)
        self._caption = (tf.function(caption_generator, reduce_retracing=True)
                         if caption_generator is not None else None)

    def __call__(self, dataset: tf.data.Dataset):
        keys, targets, outputs = [], {}, {}
        for inputs, batch_targets in dataset:
            keys += [k.decode("utf-8") for k in inputs["sample_key"].numpy()]
            result = dict(self._infer({k: inputs[k] for k in self.input_names}))
            if self._caption is not None:
                result["caption_ids"] = self._caption(inputs["video"])
            for name, value in batch_targets.items():
                targets.setdefault(name, []).append(value.numpy())
            for name, value in result.items():
                dtype = np.int32 if name == "caption_ids" else np.float32
                outputs.setdefault(name, []).append(np.asarray(value, dtype))
        targets = {k: np.concatenate(v) for k, v in targets.items()}
        outputs = {k: np.concatenate(v) for k, v in outputs.items()}
        return keys, targets, outputs


def caption_texts(keys, targets, outputs, vocab):
    """(references, generated): sample key -> [reference caption] and -> generated caption;
    samples without a reference caption are left out of the references."""
    references = {k: [r] for k, r in zip(keys, caption_metrics.decode_captions(
        targets["caption"], vocab)) if r}
    generated = dict(zip(keys, caption_metrics.decode_captions(outputs["caption_ids"], vocab)))
    return references, generated


def evaluate_predictions(targets, outputs, score_range, keys=None, vocab=None) -> Dict:
    class_names = [n for n in features.CLASS_OUTPUTS if n in outputs]
    result = metrics_lib.compute_metrics(
        targets["score"], outputs["score"], {n: targets[n] for n in class_names},
        {n: outputs[n] for n in class_names}, score_range)
    if "caption_ids" in outputs and vocab is not None:
        keys = keys if keys is not None else [str(i) for i in range(len(outputs["score"]))]
        result.update(caption_metrics.caption_scores(
            *caption_texts(keys, targets, outputs, vocab)))
    return result


def _write_json(path: str, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def _save_weights_atomically(model: keras.Model, path: str):
    tmp = path[: -len(".weights.h5")] + ".tmp.weights.h5"
    model.save_weights(tmp, overwrite=True)
    os.replace(tmp, path)


SELECTION_NAMES = {"spearman": "spearman",
                   "spearman_accuracy": "spearman + mean sub-action accuracy"}


def selection_criterion(metrics: Dict, select_on: str) -> float:
    """The number the best checkpoint maximises on the validation split.

    `spearman`: Spearman rho (the papers' criterion). `spearman_accuracy`: rho plus the mean
    accuracy of the sub-action heads, for multitask models whose every head should be good.
    """
    if select_on == "spearman":
        return float(metrics["spearman"])
    if select_on == "spearman_accuracy":
        accuracies = [v for k, v in metrics.items() if k.startswith("accuracy/")]
        return float(metrics["spearman"] + (np.mean(accuracies) if accuracies else 0.0))
    raise ValueError(f"select_on={select_on!r}; expected one of {sorted(SELECTION_NAMES)}")


class EpochEvaluation(keras.callbacks.Callback):
    """After every epoch: evaluates the validation and test splits over the whole set, writes
    `metrics/epoch_NNN.json`, saves `last.weights.h5`, and keeps `best.weights.h5` by
    validation Spearman (by the last epoch when there is no validation split). The test split
    is reported (every epoch unless `test_every_epoch` is off and there is a validation split),
    never used for the choice. State survives restarts through `best.json`.
    """

    def __init__(self, model_dir: str, evaluate_split: Callable[[str], Optional[Dict]],
                 has_val: bool, test_every_epoch: bool = True, select_on: str = "spearman"):
        super().__init__()
        self.select_on = select_on
        self.model_dir = model_dir
        self.evaluate_split = evaluate_split
        self.has_val = has_val
        self.splits = ("test",)
        if has_val:
            self.splits = ("val", "test") if test_every_epoch else ("val",)
        os.makedirs(os.path.join(model_dir, METRICS_DIR), exist_ok=True)

    def best_info(self) -> Optional[Dict]:
        path = os.path.join(self.model_dir, BEST_INFO)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        record = {"epoch": epoch + 1,
                  "train": {k: float(v) for k, v in logs.items()}}
        for split in self.splits:
            record[split] = self.evaluate_split(split)
            for name, value in record[split].items():
                if isinstance(value, (int, float)):  # not METEOR's "unavailable" reason
                    logs[f"{split}_{name.replace('/', '_')}"] = value
        _write_json(os.path.join(self.model_dir, METRICS_DIR, f"epoch_{epoch + 1:03d}.json"),
                    record)
        _save_weights_atomically(self.model, os.path.join(self.model_dir, LAST_WEIGHTS))
        best = self.best_info()
        criterion = selection_criterion(record["val"], self.select_on) if self.has_val else None
        if best is None or not self.has_val or criterion > best["criterion"]:
            _save_weights_atomically(self.model, os.path.join(self.model_dir, BEST_WEIGHTS))
            _write_json(os.path.join(self.model_dir, BEST_INFO), {
                "epoch": epoch + 1,
                "selected_on": (f"validation {SELECTION_NAMES[self.select_on]}" if self.has_val
                                else "last epoch"),
                "criterion": criterion,
                "val_spearman": record["val"]["spearman"] if self.has_val else None})
        print(f"epoch {epoch + 1}: " + ", ".join(
            f"{split} spearman {record[split]['spearman']:.4f}" for split in self.splits),
            flush=True)


class TrainingRun:
    """One training run in `train_config.model_dir`: builds data and model, fits with resumable
    checkpoints, and gives the final (honest) evaluation of the chosen checkpoint."""

    def __init__(self, data_config: DataConfig, model_config: ModelConfig,
                 train_config: TrainConfig, strategy: Optional[tf.distribute.Strategy] = None):
        from aqa_tf.models import aqa_model  # Built after the dtype policy is set.

        self.data_config, self.model_config, self.train_config = (
            data_config, model_config, train_config)
        self.strategy = strategy or tf.distribute.get_strategy()
        self.model_dir = train_config.model_dir
        os.makedirs(self.model_dir, exist_ok=True)
        self.has_val = data_config.val_fraction > 0
        try:
            train_scores = read_scores(data_config, data_config.train_split)
            read_scores(data_config, data_config.test_split)
        except tf.errors.DataLossError as error:
            raise RuntimeError(self._describe_bad_shards(error)) from error
        self.score_range = (float(train_scores.min()), float(train_scores.max()))
        self.num_train_examples = pipeline.num_examples(data_config, "train")
        steps_per_epoch = (train_config.steps_per_epoch or
                           max(1, self.num_train_examples // data_config.batch_size))
        with self.strategy.scope():
            self.model = aqa_model.build_aqa_model(model_config, data_config)
            backbone = aqa_model.backbone_of(self.model)
            if train_config.init_weights:
                # Before compiling; a resumed run then restores its own state over these.
                backbone.load_weights(train_config.init_weights)
                print(f"Backbone initialised from {train_config.init_weights}", flush=True)
            if train_config.freeze_backbone:
                backbone.trainable = False
            optimizer = make_optimizer(train_config, aqa_model.backbone_of(self.model),
                                       steps_per_epoch)
            compile_model(self.model, model_config, train_config, optimizer)
        include_caption = "caption" in model_config.heads
        self.vocab = None
        caption_generator = None
        if include_caption:
            from aqa_tf.data import captions
            self.vocab = captions.Vocabulary.load(data_config.vocab_path)
            caption_generator = aqa_model.CaptionGenerator(
                self.model, data_config.max_caption_words, train_config.caption_decoding,
                train_config.caption_beam_size)
        self.predictor = Predictor(self.model, jit_compile=train_config.jit_compile,
                                   caption_generator=caption_generator)
        self._eval_data = {
            split: pipeline.build_dataset(data_config, split, training=False, with_keys=True,
                                          include_caption=include_caption)
            for split in (("val", "test") if self.has_val else ("test",))}
        train_data = pipeline.build_dataset(data_config, "train", training=True,
                                            include_caption=include_caption)
        # Known length: the progress bar shows the epoch's total from the first epoch on.
        train_data = train_data.apply(tf.data.experimental.assert_cardinality(
            self.num_train_examples // data_config.batch_size))
        self.train_data = select_model_io(train_data, self.model)
        if train_config.steps_per_epoch:
            self.train_data = self.train_data.repeat()

    def evaluate_split(self, split: str, return_predictions: bool = False):
        keys, targets, outputs = self.predictor(self._eval_data[split])
        result = evaluate_predictions(targets, outputs, self.score_range, keys, self.vocab)
        if return_predictions:
            return result, (keys, targets, outputs)
        return result

    def callbacks(self):
        backup = keras.callbacks.BackupAndRestore(
            os.path.join(self.model_dir, BACKUP_DIR),
            save_freq=self.train_config.backup_every_steps or "epoch", delete_checkpoint=False)
        # The epoch's evaluation (metrics JSON, last/best weights) is written before the backup
        # marks the epoch done: a run killed in between trains that epoch again rather than
        # losing its metrics.
        return [
            EpochEvaluation(self.model_dir, self.evaluate_split, self.has_val,
                            self.train_config.test_every_epoch, self.train_config.select_on),
            backup,
            keras.callbacks.TensorBoard(os.path.join(self.model_dir, "logs")),
        ]

    def completed_epochs(self) -> int:
        path = os.path.join(self.model_dir, BACKUP_DIR, "training_metadata.json")
        if not os.path.exists(path):
            return 0
        with open(path) as f:
            return int(json.load(f)["epoch"])

    def evaluate_untrained(self):
        """Test metrics of the freshly initialised model (`metrics/epoch_000.json`): the
        baseline that training must beat. Skipped when resuming."""
        path = os.path.join(self.model_dir, METRICS_DIR, "epoch_000.json")
        if self.completed_epochs() or os.path.exists(path):
            return None
        os.makedirs(os.path.dirname(path), exist_ok=True)
        record = {"epoch": 0, "test": self.evaluate_split("test")}
        _write_json(path, record)
        print(f"untrained model: test spearman {record['test']['spearman']:.4f}", flush=True)
        return record

    def fit(self, verbose: int = 1):
        done = self.completed_epochs()
        if done:
            print(f"Resuming {self.model_dir} after epoch {done} of {self.train_config.epochs}",
                  flush=True)
        try:
            return self.model.fit(
                self.train_data, epochs=self.train_config.epochs,
                steps_per_epoch=self.train_config.steps_per_epoch or None,
                callbacks=self.callbacks(), verbose=verbose)
        except tf.errors.DataLossError as error:
            raise RuntimeError(self._describe_bad_shards(error)) from error

    def _describe_bad_shards(self, error) -> str:
        """Names the shards that cannot be read (finished epochs stay in the backup)."""
        from tfrecords_tools import inspect as inspect_lib
        patterns = [features.shard_pattern(self.data_config.data_dir, split)
                    for split in (self.data_config.train_split, self.data_config.test_split)]
        problems = inspect_lib.inspect_paths(patterns, decode_frames=False)["problems"]
        return ("training data cannot be read: " + error.message.splitlines()[0] +
                "\n  " + "\n  ".join(problems or ["(no shard-level problem found)"]) +
                "\nFix or re-create these shards; re-running resumes after the last "
                "finished epoch.")

    def final_evaluation(self) -> Dict:
        """Test metrics of the checkpoint chosen on the validation split (or the last epoch)."""
        info_path = os.path.join(self.model_dir, BEST_INFO)
        with open(info_path) as f:
            info = json.load(f)
        self.model.load_weights(os.path.join(self.model_dir, BEST_WEIGHTS))
        metrics, (keys, targets, outputs) = self.evaluate_split("test", return_predictions=True)
        from aqa_tf import reporting
        reporting.write_predictions(os.path.join(self.model_dir, "test_predictions.csv"),
                                    keys, targets, outputs)
        if self.vocab is not None:
            caption_metrics.write_captions(os.path.join(self.model_dir, "test_captions.csv"),
                                           keys, *caption_texts(keys, targets, outputs,
                                                                self.vocab))
        plot = reporting.scatter_plot(os.path.join(self.model_dir, "test_scatter.png"),
                                      targets["score"], outputs["score"], metrics["spearman"],
                                      title=f"test split, epoch {info['epoch']} checkpoint")
        class_names = [n for n in features.CLASS_OUTPUTS if n in targets]
        result = {"split": "test", "checkpoint_epoch": info["epoch"],
                  "selected_on": info["selected_on"], "metrics": metrics,
                  "checkpoint_description": (
                      f"checkpoint of epoch {info['epoch']}, chosen on {info['selected_on']} "
                      "(the test split was not used to choose it)"),
                  "majority_rates": {n: metrics_lib.majority_rate(targets[n])
                                     for n in class_names},
                  "scatter_plot": plot}
        _write_json(os.path.join(self.model_dir, "final_metrics.json"), result)
        return result

    def export(self, export_path: str, flags_file: str = "") -> str:
        """SavedModel of the loaded (best) weights, computing in `train_config.export_dtype`.

        A model trained under mixed precision keeps float32 variables; by default it is rebuilt
        with the float32 policy for serving (bfloat16 activations would move scores by ~0.1
        point), `--export_dtype=training` keeps the training policy (faster on bf16 hardware).
        """
        from aqa_tf import export_lib
        from aqa_tf.models import aqa_model
        model = self.model
        policy = keras.mixed_precision.global_policy()
        if self.train_config.export_dtype == "float32" and policy.name != "float32":
            keras.mixed_precision.set_global_policy("float32")
            try:
                model = aqa_model.build_aqa_model(self.model_config, self.data_config)
                model.set_weights(self.model.get_weights())
            finally:
                keras.mixed_precision.set_global_policy(policy)
        return export_lib.export_saved_model(
            model, self.data_config, export_path, flags_file, vocab=self.vocab,
            caption_decoding=self.train_config.caption_decoding,
            caption_beam_size=self.train_config.caption_beam_size)
