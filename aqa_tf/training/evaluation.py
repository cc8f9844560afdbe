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
from typing import TYPE_CHECKING, Callable, Dict, List, Sequence, Tuple

import keras
import numpy as np

from aqa_tf import tasks
from aqa_tf.config import DataConfig, EvalConfig
from aqa_tf.metrics import report as reporting
from aqa_tf.models import aqa_model
from aqa_tf.models.heads.base import Predictions, ReportContext
from aqa_tf.registry import SELECTION_RULES
from aqa_tf.training import run_folder

if TYPE_CHECKING:  # annotations only: TensorFlow is imported where it is used
    import tensorflow as tf


class Predictor:
    """Runs a model over an evaluation dataset and collects keys, targets and outputs.

    The model runs without its training-only paths (`AQAModel.inference_model`); `generators`
    (video -> dict of arrays, from the heads, e.g. caption ids) add their outputs.
    """

    def __init__(self, model: keras.Model, jit_compile: bool = False,
                 generators: Sequence[Callable] = (), exemplar_banks: bool = True):
        self.model = aqa_model.inference_model(model)
        # Inputs the dataset does not hold: the training exemplars of CoRe's head (read from
        # the training records; `exemplar_banks=False` where the caller gives them, as the
        # benchmark does).
        self.extra_inputs = [exemplar_bank_of(model, h) for h in
                             getattr(aqa_model.owner(model), "heads", {}).values()
                             if h.compares_exemplars and exemplar_banks]
        self.input_names = list(self.model.input.keys())
        self.native = keras.backend.backend() == "tensorflow"
        if self.native:
            import tensorflow as tf
            # autograph=False: no Python control flow on tensors in either (the decoder loops
            # with ops.while_loop), and converting the model's code took seconds per process.
            self.predict_batch = tf.function(lambda x: self.model(x, training=False),
                                             jit_compile=jit_compile, reduce_retracing=True,
                                             autograph=False)
            self._generators = [tf.function(g, reduce_retracing=True, autograph=False)
                                for g in generators]
        else:
            # Other Keras backends (JAX): the input pipeline stays tf.data; its batches go to
            # Keras's own compiled predict step as numpy arrays (a function traced here would
            # capture the weights as constants, stale once training changes them); arrays
            # already on the device stay there. Generators run eagerly.
            self.predict_batch = lambda x: self.model.predict_on_batch(
                {k: v if keras.ops.is_tensor(v) else np.asarray(v) for k, v in x.items()})
            self._generators = list(generators)

    def __call__(self, dataset: tf.data.Dataset) -> Predictions:
        keys, targets, outputs, actions, names = [], {}, {}, [], {}
        for extra in self.extra_inputs:
            extra.refresh()
        for inputs, batch_targets in dataset:
            keys += [k.decode("utf-8") for k in inputs["sample_key"].numpy()]
            if tasks.ACTION_INPUT in inputs:
                actions.append(inputs[tasks.ACTION_INPUT].numpy())
                for action, name in zip(actions[-1], inputs["action_name"].numpy()):
                    if name:
                        names[int(action)] = name.decode("utf-8")
            batch = {k: inputs[k] for k in self.input_names if k in inputs}
            if self.extra_inputs:  # the exemplars' lookup reads the keys and match fields only
                fields = {k: inputs[k].numpy() for k in ("sample_key", "dive_number",
                                                         tasks.DIFFICULTY_INPUT,
                                                         tasks.ACTION_INPUT) if k in inputs}
                for extra in self.extra_inputs:
                    batch.update(extra(fields))
            result = dict(self.predict_batch(batch))
            video = inputs["video"] if self.native else np.asarray(inputs["video"])
            for generate in self._generators:
                result.update(generate(video))
            for name, value in batch_targets.items():
                targets.setdefault(name, []).append(value.numpy())
            for name, value in result.items():
                value = np.asarray(value)
                dtype = np.int32 if np.issubdtype(value.dtype, np.integer) else np.float32
                outputs.setdefault(name, []).append(value.astype(dtype))
        return Predictions(keys, {k: np.concatenate(v) for k, v in targets.items()},
                           {k: _concatenate(v) for k, v in outputs.items()},
                           np.concatenate(actions) if actions else None, names)


def _concatenate(batches: List[np.ndarray]) -> np.ndarray:
    """Batches of an output along the samples; per-voter outputs (`[batch, voters, ...]`) of
    batches that had fewer voters (the smallest count among a batch's queries, where a
    match value has fewer training samples than --voters) are padded with NaN (float) or -1."""
    widths = {b.shape[1] for b in batches if b.ndim > 1}
    if len(widths) <= 1:
        return np.concatenate(batches)
    fill = -1 if np.issubdtype(batches[0].dtype, np.integer) else np.nan
    width = max(widths)
    return np.concatenate([np.pad(b, [(0, 0), (0, width - b.shape[1])] + [(0, 0)] * (b.ndim - 2),
                                  constant_values=fill) for b in batches])


def exemplar_bank_of(model: keras.Model, head):
    """The `data.exemplar_bank.ExemplarBank` of a head that compares with exemplars, whose
    encoder is the head's (`bank_encoder`: the model's layers, evaluation mode)."""
    from aqa_tf.data.exemplar_bank import ExemplarBank
    owner = aqa_model.owner(model)
    encoder = head.bank_encoder(owner)
    config = head.model_config
    return ExemplarBank(head.data_config, config.exemplar_match, config.core_difficulty,
                        config.voters, lambda video: encoder.predict_on_batch(video))


def evaluate_predictions(model: keras.Model, predictions: Predictions,
                         context: ReportContext) -> Dict:
    """Every metric of one split, from every head of `model` (score metrics, sub-action
    accuracies, caption metrics, ...)."""
    result = {}
    for head in aqa_model.owner(model).heads.values():
        result.update(head.metrics(predictions, context))
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
      model: an `AQAModel` (its current weights are evaluated).
      data_config: the dataset and preprocessing.
      score_range: (min, max) of the training scores, for R-l2 (`statistics.score_range`).
      eval_config: how generating heads decode (e.g. captions: greedy or beam search).
      jit_compile: compile the prediction step with XLA.
    """

    def __init__(self, model: keras.Model, data_config: DataConfig,
                 score_range: Tuple[float, float], eval_config: EvalConfig = EvalConfig(),
                 jit_compile: bool = False):
        self.model, self.data_config, self.score_range = model, data_config, score_range
        self.heads = list(aqa_model.owner(model).heads.values())
        generators = [g for g in (h.generator(model, eval_config) for h in self.heads) if g]
        self.dataset_options = {k: v for h in self.heads for k, v in h.dataset_options.items()}
        self.predictor = Predictor(model, jit_compile, generators)
        self._datasets: Dict[str, tf.data.Dataset] = {}

    def dataset(self, split: str) -> tf.data.Dataset:
        if split not in self._datasets:
            from aqa_tf.data import pipeline
            self._datasets[split] = pipeline.build_dataset(
                self.data_config, split, training=False, with_keys=True, **self.dataset_options)
        return self._datasets[split]

    def predict(self, split: str) -> Predictions:
        return self.predictor(self.dataset(split))

    def context(self, split: str, checkpoint_label: str = "") -> ReportContext:
        return ReportContext(self.data_config, self.score_range, split, checkpoint_label)

    def evaluate(self, split: str) -> Dict:
        """The metrics of `split` ('train', 'val' or 'test')."""
        return evaluate_predictions(self.model, self.predict(split), self.context(split))

    def report(self, split: str, metrics_path: str, files_prefix: str, checkpoint_label: str,
               checkpoint_description: str, **info) -> Dict:
        """Evaluates `split` and writes its report.

        Writes `metrics_path` (the returned dict: metrics, what each head reports, e.g. the
        majority-class rates and the scatter plot, and `info`),
        `<files_prefix>_predictions.csv` and each head's files (`<files_prefix>_scatter.png`,
        `<files_prefix>_captions.csv`, ...).
        """
        predictions = self.predict(split)
        context = self.context(split, checkpoint_label)
        metrics = evaluate_predictions(self.model, predictions, context)
        reporting.write_predictions(f"{files_prefix}_predictions.csv", predictions.keys,
                                    predictions.targets, predictions.outputs)
        result = {**info, "split": split, "metrics": metrics,
                  "checkpoint_description": checkpoint_description}
        for head in self.heads:
            result.update(head.report(predictions, metrics, files_prefix, context))
        run_folder.write_json(metrics_path, result)
        return result
