"""Evaluation: one path for the per-epoch evaluation, the end of training, `aqa_tf.evaluate`
and `aqa_tf.benchmark`.

`Predictor` runs a model over a dataset; `Evaluator` evaluates a model on the splits of a
dataset (metrics over the whole split, not averaged per batch) and writes the report of one
split (metrics JSON, predictions CSV, captions CSV, scatter plot). The rules that choose the
best checkpoint from validation metrics (`--select_on`) are registered here.

TensorFlow (and the record format and input pipeline built on it) is imported where records
are read or a `tf.function` is made, so that `Predictor` serves a model under Keras's JAX
backend on a machine without TensorFlow (`aqa_tf.benchmark` on a GPU machine).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import keras
import numpy as np

from aqa_tf import caption_metrics
from aqa_tf import metrics as metrics_lib
from aqa_tf import reporting
from aqa_tf import run_folder
from aqa_tf import tasks
from aqa_tf.config import DataConfig, EvalConfig
from aqa_tf.data import captions
from aqa_tf.models import aqa_model
from aqa_tf.registry import SELECTION_RULES


def read_scores(data_config: DataConfig, split: str) -> np.ndarray:
    """Final scores of the records of `split` (a shard prefix), read from the record contexts
    only (no frame decoding); missing scores are left out."""
    import tensorflow as tf
    from aqa_tf.data import features, shards
    spec = {features.FINAL_SCORE: tf.io.FixedLenFeature([], tf.float32)}
    ds = tf.data.TFRecordDataset(shards.shard_files(data_config.data_dir, split)).map(
        lambda s: tf.io.parse_single_sequence_example(s, context_features=spec)[0][
            features.FINAL_SCORE])
    scores = np.array([float(s) for s in ds.as_numpy_iterator()], np.float64)
    return scores[np.isfinite(scores) & (scores >= 0)]


def action_score_statistics(data_config: DataConfig) -> Tuple[Tuple[float, ...],
                                                              Tuple[float, ...]]:
    """Per-action standard deviation and mean of the training split's scores, indexed by action
    id: paper 003, "we divide the raw scores of all the actions by the training standard
    deviation of the corresponding action". Deviation 1.0 and mean 0.0 for ids without training
    scores. Population deviation (numpy's default, ddof=0), as the converter's per-action
    summary. Every training record counts, whatever `--actions` keeps: a zero-shot model scales
    its unseen action by that action's own statistics."""
    import tensorflow as tf
    from aqa_tf.data import features, shards
    spec = {features.FINAL_SCORE: tf.io.FixedLenFeature([], tf.float32),
            features.ACTION_ID: tf.io.FixedLenFeature([], tf.int64)}
    ds = tf.data.TFRecordDataset(shards.shard_files(data_config.data_dir,
                                                    data_config.train_split)).map(
        lambda s: tf.io.parse_single_sequence_example(s, context_features=spec)[0])
    by_action: Dict[int, list] = {}
    for record in ds.as_numpy_iterator():
        score = float(record[features.FINAL_SCORE])
        if np.isfinite(score) and score >= 0:
            by_action.setdefault(int(record[features.ACTION_ID]), []).append(score)
    stds = [1.0] * (max(by_action, default=0) + 1)
    means = [0.0] * len(stds)
    for action, scores in by_action.items():
        std = float(np.std(scores))
        stds[action] = std if std > 0 else 1.0
        means[action] = float(np.mean(scores))
    return tuple(stds), tuple(means)


def action_score_stds(data_config: DataConfig) -> Tuple[float, ...]:
    """Per-action training standard deviations (`action_score_statistics`)."""
    return action_score_statistics(data_config)[0]


def with_action_score_stds(data_config: DataConfig) -> DataConfig:
    """`data_config` with `action_score_std` (and, standardising, `action_score_mean`) measured
    on its training records when it normalises scores per action (unchanged otherwise)."""
    if not data_config.per_action_scores or data_config.action_score_std:
        return data_config
    stds, means = action_score_statistics(data_config)
    if data_config.score_normalization != "per_action_standardized":
        means = ()
    return dataclasses.replace(data_config, action_score_std=stds, action_score_mean=means)


def score_range(data_config: DataConfig) -> Tuple[float, float]:
    """(min, max) score of the training split: the range R-l2 is relative to."""
    scores = read_scores(data_config, data_config.train_split)
    return float(scores.min()), float(scores.max())


@dataclasses.dataclass
class Predictions:
    """A model's outputs over a split, with the sample keys and targets, in record order."""

    keys: List[str]
    targets: Dict[str, np.ndarray]
    outputs: Dict[str, np.ndarray]
    # Action id of every sample (0 for single-action datasets such as MTL-AQA).
    actions: Optional[np.ndarray] = None


class Predictor:
    """Runs a model over an evaluation dataset and collects keys, targets and outputs.

    Models with a caption head are run without their teacher-forced caption path; their
    captions are written by `caption_generator` (greedy or beam search) into
    `outputs["caption_ids"]`.
    """

    def __init__(self, model: keras.Model, jit_compile: bool = False,
                 caption_generator: Optional[Callable] = None):
        self.model = aqa_model.inference_model(model)
        self.input_names = list(self.model.input.keys())
        self.native = keras.backend.backend() == "tensorflow"
        if self.native:
            import tensorflow as tf
            # autograph=False: no Python control flow on tensors in either (the decoder loops
            # with ops.while_loop), and converting the model's code took seconds per process.
            self.predict_batch = tf.function(lambda x: self.model(x, training=False),
                                             jit_compile=jit_compile, reduce_retracing=True,
                                             autograph=False)
            self._caption = (tf.function(caption_generator, reduce_retracing=True,
                                         autograph=False)
                             if caption_generator is not None else None)
        else:
            # Other Keras backends (JAX): the input pipeline stays tf.data; its batches go to
            # Keras's own compiled predict step as numpy arrays (a function traced here would
            # capture the weights as constants, stale once training changes them); arrays already
            # on the device stay there. Captions are decoded eagerly.
            self.predict_batch = lambda x: self.model.predict_on_batch(
                {k: v if keras.ops.is_tensor(v) else np.asarray(v) for k, v in x.items()})
            self._caption = caption_generator

    def __call__(self, dataset: tf.data.Dataset) -> Predictions:
        keys, targets, outputs, actions = [], {}, {}, []
        for inputs, batch_targets in dataset:
            keys += [k.decode("utf-8") for k in inputs["sample_key"].numpy()]
            if tasks.ACTION_INPUT in inputs:
                actions.append(inputs[tasks.ACTION_INPUT].numpy())
            result = dict(self.predict_batch({k: inputs[k] for k in self.input_names}))
            if self._caption is not None:
                video = inputs["video"] if self.native else np.asarray(inputs["video"])
                result["caption_ids"] = self._caption(video)
            for name, value in batch_targets.items():
                targets.setdefault(name, []).append(value.numpy())
            for name, value in result.items():
                dtype = np.int32 if name == "caption_ids" else np.float32
                outputs.setdefault(name, []).append(np.asarray(value, dtype))
        return Predictions(keys, {k: np.concatenate(v) for k, v in targets.items()},
                           {k: np.concatenate(v) for k, v in outputs.items()},
                           np.concatenate(actions) if actions else None)


def caption_texts(predictions: Predictions,
                  vocab: captions.Vocabulary) -> Tuple[Dict[str, List[str]], Dict[str, str]]:
    """(references, generated): sample key -> [reference caption] and -> generated caption;
    samples without a reference caption are left out of the references."""
    keys = predictions.keys
    references = {k: [r] for k, r in zip(keys, caption_metrics.decode_captions(
        predictions.targets[tasks.CAPTION_OUTPUT], vocab)) if r}
    generated = dict(zip(keys, caption_metrics.decode_captions(
        predictions.outputs["caption_ids"], vocab)))
    return references, generated


def class_outputs(names: Iterable[str]) -> List[str]:
    """The sub-action outputs among `names`, in the order of `tasks.CLASS_OUTPUTS`."""
    return [n for n in tasks.CLASS_OUTPUTS if n in names]


def evaluate_predictions(predictions: Predictions, score_range: Tuple[float, float],
                         vocab: Optional[captions.Vocabulary] = None) -> Dict:
    """Every metric of one split: score metrics, sub-action accuracies and, for caption models
    (with `vocab`), the caption metrics."""
    targets, outputs = predictions.targets, predictions.outputs
    names = class_outputs(outputs)
    result = metrics_lib.compute_metrics(
        targets["score"], outputs["score"], {n: targets[n] for n in names},
        {n: outputs[n] for n in names}, score_range)
    if predictions.actions is not None and np.any(predictions.actions > 0):
        # Multi-action datasets (AQA-7): Spearman per action and its Fisher-z average.
        result.update(metrics_lib.per_action_metrics(targets["score"], outputs["score"],
                                                     predictions.actions, tasks.AQA7_ACTIONS))
    if "caption_ids" in outputs and vocab is not None:
        result.update(caption_metrics.caption_scores(*caption_texts(predictions, vocab)))
    return result


@dataclasses.dataclass(frozen=True)
class SelectionRule:
    """How the best checkpoint is chosen: `criterion(metrics)` is maximised on the validation
    split; `description` says so in reports."""

    description: str
    criterion: Callable[[Dict], float]


def _mean_accuracy(metrics: Dict) -> float:
    accuracies = [v for k, v in metrics.items() if k.startswith("accuracy/")]
    return float(np.mean(accuracies)) if accuracies else 0.0


SELECTION_RULES.register("spearman", SelectionRule(
    "spearman", lambda m: float(m["spearman"])))  # the papers' criterion
SELECTION_RULES.register("spearman_fisher_z", SelectionRule(
    "Fisher-z average of the per-action Spearman rho",  # multi-action models (paper 003)
    lambda m: float(m.get("spearman_fisher_z", m["spearman"]))))
SELECTION_RULES.register("spearman_accuracy", SelectionRule(
    "spearman + mean sub-action accuracy",  # multitask models, whose every head should be good
    lambda m: float(m["spearman"]) + _mean_accuracy(m)))


def selection_criterion(metrics: Dict, select_on: str) -> float:
    """The number the best checkpoint maximises on the validation split (`--select_on`)."""
    return SELECTION_RULES.get(select_on, "select_on").criterion(metrics)


class Evaluator:
    """Evaluates a model on the splits of `data_config` (evaluation pipeline, no augmentation).

    Args:
      model: a model built by `build_aqa_model` (its current weights are evaluated).
      data_config: the dataset and preprocessing.
      score_range: (min, max) of the training scores, for R-l2 (`score_range(data_config)`).
      eval_config: caption decoding of caption models.
      jit_compile: compile the prediction step with XLA.
    """

    def __init__(self, model: keras.Model, data_config: DataConfig,
                 score_range: Tuple[float, float], eval_config: EvalConfig = EvalConfig(),
                 jit_compile: bool = False):
        self.data_config, self.score_range = data_config, score_range
        self.with_captions = aqa_model.has_caption_head(model)
        self.vocab, generator = None, None
        if self.with_captions:
            self.vocab = captions.Vocabulary.load(data_config.vocab_path)
            generator = aqa_model.CaptionGenerator(
                model, data_config.max_caption_words, eval_config.caption_decoding,
                eval_config.caption_beam_size)
        self.predictor = Predictor(model, jit_compile, generator)
        self._datasets: Dict[str, tf.data.Dataset] = {}

    def dataset(self, split: str) -> tf.data.Dataset:
        if split not in self._datasets:
            from aqa_tf.data import pipeline
            self._datasets[split] = pipeline.build_dataset(
                self.data_config, split, training=False, with_keys=True,
                include_caption=self.with_captions)
        return self._datasets[split]

    def predict(self, split: str) -> Predictions:
        return self.predictor(self.dataset(split))

    def evaluate(self, split: str) -> Dict:
        """The metrics of `split` ('train', 'val' or 'test')."""
        return evaluate_predictions(self.predict(split), self.score_range, self.vocab)

    def report(self, split: str, metrics_path: str, files_prefix: str, checkpoint_label: str,
               checkpoint_description: str, **info) -> Dict:
        """Evaluates `split` and writes its report.

        Writes `metrics_path` (the returned dict: metrics, majority-class rates, `info`),
        `<files_prefix>_predictions.csv`, `<files_prefix>_scatter.png` and, for caption models,
        `<files_prefix>_captions.csv`.
        """
        predictions = self.predict(split)
        metrics = evaluate_predictions(predictions, self.score_range, self.vocab)
        reporting.write_predictions(f"{files_prefix}_predictions.csv", predictions.keys,
                                    predictions.targets, predictions.outputs)
        if self.vocab is not None:
            caption_metrics.write_captions(f"{files_prefix}_captions.csv", predictions.keys,
                                           *caption_texts(predictions, self.vocab))
        plot = reporting.scatter_plot(
            f"{files_prefix}_scatter.png", predictions.targets["score"],
            predictions.outputs["score"], metrics["spearman"],
            title=f"{split} split, {checkpoint_label}")
        if "spearman_fisher_z" in metrics:
            info["action_table"] = reporting.write_action_table(
                f"{files_prefix}_actions", metrics, title=f"{split} split, {checkpoint_label}")
        result = {**info, "split": split, "metrics": metrics,
                  "checkpoint_description": checkpoint_description,
                  "majority_rates": {n: metrics_lib.majority_rate(predictions.targets[n])
                                     for n in class_outputs(predictions.targets)},
                  "scatter_plot": plot}
        run_folder.write_json(metrics_path, result)
        return result
