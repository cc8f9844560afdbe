"""Procedure-aware relative scoring: TSA (Xu et al., CVPR 2022, "FineDiving: A Fine-grained
Dataset for Procedure-aware Action Quality Assessment"; code: github.com/xujinglin/FineDiving).

Like CoRe (`heads.core`, whose exemplar pairs, voters, bank and serving it shares), TSA scores
a query relative to exemplars of known score, but step by step: a procedure segmentation
network (`layers.procedure.StepSegmenter`) finds the dive's two step transitions (take-off |
flight | entry) in the query and in the exemplar, each step's features are resampled to
`--tsa_fix_size` frames, the query's steps attend to the same steps of the exemplar's feature
maps (`StepDecoder`) and a regressor gives each token's share of the score difference. The
sum of a step's shares is what that step wins or loses against the exemplar
(`step_contributions`), the difference their total.

Training (the authors' `tools/helper.py`, `network_forward_train`): every element is a
(query, exemplar) pair; both directions are regressed (mean squared error on `query -
exemplar`), and the transitions of both videos are trained with binary cross-entropy against
the annotated ones (`TransitionLoss`). For the first `--tsa_label_fraction` of the epochs the
annotated transitions cut the steps, then the predicted ones (`LabelCut`, switched by the
head's callback).

Evaluation and serving (`network_forward_test`): the query against `--voters` training
exemplars whose step maps (`exemplar_features [batch, voters, 3, fix * H'W', d]`, from the
model's own layers: `bank_encoder`) and targets are inputs; `voter_scores` are each exemplar's
verdict, `score` their mean, `step_transitions` the query's predicted transitions (frames of
the model's window) and `step_contributions` each step's share of the difference, averaged
over the voters. Evaluation adds the transitions' AIoU at 0.5 and 0.75 (`data.procedure.aiou`).
"""

from typing import Dict

import keras
import numpy as np
from keras import layers, ops

from aqa_tf import tasks
from aqa_tf.config import ConfigError
from aqa_tf.data.exemplars import EXEMPLAR_FEATURES, EXEMPLAR_TARGETS
from aqa_tf.models.heads.base import Features
from aqa_tf.models.heads.core import (EXEMPLAR_MASK, EXEMPLAR_TARGET, EXEMPLAR_VIDEO,
                                      PAIR_SCORE, QUERY_TARGET, RELATIVE_TARGET, VOTER_SCORES,
                                      CoReHead)
from aqa_tf.models.layers import procedure
from aqa_tf.models.losses import TransitionLoss
from aqa_tf.registry import HEADS

QUERY_TRANSITIONS = "query_transitions"
EXEMPLAR_TRANSITIONS = "exemplar_transitions"
TSA_DELTA = "tsa_delta"
TSA_DELTA_REVERSE = "tsa_delta_reverse"
STEP_PROBS = "step_probs"
EXEMPLAR_STEP_PROBS = "exemplar_step_probs"
STEP_CONTRIBUTIONS = "step_contributions"
VOTER_STEP_CONTRIBUTIONS = "voter_step_contributions"
STEP_NAMES = ("take-off", "flight", "entry")
AIOU_THRESHOLDS = (0.5, 0.75)


@keras.saving.register_keras_serializable(package="aqa_tf")
class LabelCut(layers.Layer):
    """Where the steps are cut in training: the annotated transitions while `use_labels` is
    1 (the first `--tsa_label_fraction` of the epochs, as the authors' `prob_tas_threshold`),
    else the predicted ones. A non-trainable variable set by `LabelSchedule` at each epoch's
    start (so a resumed run cuts as the epoch says)."""

    def build(self, *shapes):
        self.use_labels = self.add_weight(shape=(), initializer="ones", trainable=False,
                                          name="use_labels")

    def call(self, labels, predicted):
        use = ops.logical_and(ops.greater(ops.cast(self.use_labels, "float32"), 0.5),
                              ops.greater_equal(ops.min(labels, axis=-1, keepdims=True), 0))
        return ops.where(use, ops.cast(labels, "int32"), ops.cast(predicted, "int32"))

    def compute_output_shape(self, labels_shape, predicted_shape):
        return predicted_shape


class LabelSchedule(keras.callbacks.Callback):
    """Sets `LabelCut.use_labels` at each epoch's start: 1 for epochs below `fraction` of
    `epochs` (the authors: `epoch / max_epoch <= prob_tas_threshold`), else 0."""

    def __init__(self, layer: LabelCut, fraction: float, epochs: int):
        super().__init__()
        self.layer, self.fraction, self.epochs = layer, fraction, epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.layer.use_labels.assign(1.0 if epoch / self.epochs <= self.fraction else 0.0)


class TSAHead(CoReHead):
    """See the module docstring."""

    name = "tsa"
    reads_clip_maps = True
    # The authors run I3D once on every clip of the query and the exemplar (`models/
    # Backbone.py`): BatchNorm's statistics are over them all.
    folds_clips = True
    training_inputs = (EXEMPLAR_VIDEO, EXEMPLAR_TARGET, QUERY_TARGET, QUERY_TRANSITIONS,
                       EXEMPLAR_TRANSITIONS)
    training_outputs = (TSA_DELTA, TSA_DELTA_REVERSE, STEP_PROBS, EXEMPLAR_STEP_PROBS,
                        PAIR_SCORE)
    target_keys = {TSA_DELTA: RELATIVE_TARGET, TSA_DELTA_REVERSE: RELATIVE_TARGET,
                   STEP_PROBS: tasks.STEP_TRANSITIONS, EXEMPLAR_STEP_PROBS: EXEMPLAR_TRANSITIONS}
    untrained_outputs = (PAIR_SCORE,)

    @classmethod
    def pinned_options(cls, model_config, data_config):
        return {}

    @classmethod
    def check_config(cls, model_config):
        if model_config.voters < 1:
            raise ConfigError(f"voters={model_config.voters} must be >= 1")
        if model_config.tsa_fix_size < 2:
            raise ConfigError(f"tsa_fix_size={model_config.tsa_fix_size} must be >= 2")
        if not 0 <= model_config.tsa_label_fraction <= 1:
            raise ConfigError(f"tsa_label_fraction={model_config.tsa_label_fraction} must be "
                              "in 0..1")
        if model_config.tsa_heads < 1 or model_config.tsa_layers < 1:
            raise ConfigError("tsa_heads and tsa_layers must be >= 1")
        if model_config.multiply_difficulty:
            raise ConfigError("heads=tsa: use --core_difficulty, not --multiply_difficulty")

    @property
    def dataset_options(self):
        return {"exemplar_pairs": (self.model_config.exemplar_match,
                                   self.model_config.core_difficulty),
                "include_steps": True}

    def add_inputs(self, inputs):
        super().add_inputs(inputs)
        inputs[QUERY_TRANSITIONS] = keras.Input((2,), dtype="int32", name=QUERY_TRANSITIONS)
        inputs[EXEMPLAR_TRANSITIONS] = keras.Input((2,), dtype="int32",
                                                   name=EXEMPLAR_TRANSITIONS)

    def build(self, features: Features) -> Dict[str, keras.KerasTensor]:
        if features.clip_maps is None or features.encode_clips is None:
            raise ValueError("head tsa reads every clip's feature map")
        config, data = self.model_config, self.data_config
        dim = int(features.clips.shape[-1])
        if dim % 16:
            raise ConfigError(f"heads=tsa: the backbone's {dim} features are not a multiple of "
                              "16 (the step segmenter pools them 4 times)")
        step_dim = dim // 16
        if step_dim % config.tsa_heads:
            raise ConfigError(f"heads=tsa: the step features' {step_dim} dimensions (backbone "
                              f"features / 16) do not split into --tsa_heads={config.tsa_heads}")
        frames = data.num_frames
        if frames < 4:
            raise ConfigError(f"heads=tsa needs num_frames >= 4 (three steps), not {frames}")
        inputs = features.inputs
        self.segmenter = procedure.StepSegmenter(frames=frames, name="tsa_segmenter")
        self.pool = procedure.StepPool(config.tsa_fix_size, name="tsa_step_pool")
        self.decoder = procedure.StepDecoder(step_dim, config.tsa_heads, config.tsa_layers,
                                             name="tsa_decoder")
        self.regressor = procedure.DeltaRegressor(name="tsa_regressor", dtype="float32")
        self.query_cut = LabelCut(name="tsa_query_cut")
        self.exemplar_cut = LabelCut(name="tsa_exemplar_cut")
        # Training: both videos through I3D and PSNet as one batch, as the authors' (BatchNorm
        # statistics over both; the inference path below reads the query alone).
        clips, maps = features.encode_clips(
            ops.concatenate([inputs["video"], inputs[EXEMPLAR_VIDEO]], axis=0))
        step_features, step_maps, probs = procedure.segment_steps(self.segmenter, clips, maps)
        halves = lambda x: ops.split(x, 2, axis=0)  # noqa: E731
        query_probs, exemplar_probs = halves(probs)
        query_steps, exemplar_steps = halves(step_features)
        query_maps, exemplar_step_maps = halves(step_maps)
        query_cut = self.query_cut(inputs[QUERY_TRANSITIONS],
                                   procedure.transition_frames(query_probs))
        exemplar_cut = self.exemplar_cut(inputs[EXEMPLAR_TRANSITIONS],
                                         procedure.transition_frames(exemplar_probs))
        forward = self._deltas(step_tokens(self.pool, query_steps, query_cut),
                               step_tokens(self.pool, exemplar_step_maps, exemplar_cut))
        reverse = self._deltas(step_tokens(self.pool, exemplar_steps, exemplar_cut),
                               step_tokens(self.pool, query_maps, query_cut))
        delta = layers.Lambda(lambda x: ops.sum(x, axis=-1), name=TSA_DELTA)(forward)
        # Trained against `query - exemplar` too: the reverse pair predicts its negative.
        reverse_delta = layers.Lambda(lambda x: -ops.sum(x, axis=-1),
                                      name=TSA_DELTA_REVERSE)(reverse)
        pair_score = self._to_score(inputs[EXEMPLAR_TARGET] + delta,
                                    inputs.get(tasks.DIFFICULTY_INPUT))
        named = lambda name: layers.Identity(name=name, dtype="float32")  # noqa: E731

        # Inference: the query alone (its own transitions), against a bank of exemplar step
        # maps (`bank_encoder`: what `exemplar_memory` computes for a training exemplar).
        own_features, own_maps, own_probs = procedure.segment_steps(
            self.segmenter, features.clips, features.clip_maps)
        # The transitions the steps are cut at (a predicted 0 is cut at 1, as the authors do).
        own_cut = procedure.cut_points(procedure.transition_frames(own_probs), frames)
        tokens = step_tokens(self.pool, own_features, own_cut)  # [N * 3, fix, d]
        memory = step_tokens(self.pool, own_maps, own_cut)  # [N * 3, fix * H'W', d]
        self.exemplar_memory = ops.reshape(memory, (-1, procedure.STEPS) +
                                           tuple(int(v) for v in memory.shape[1:]))
        memory_shape = tuple(int(v) for v in self.exemplar_memory.shape[1:])
        bank = keras.Input((None,) + memory_shape, name=EXEMPLAR_FEATURES)
        targets = keras.Input((None,), name=EXEMPLAR_TARGETS)
        self.inference_inputs = {EXEMPLAR_FEATURES: bank, EXEMPLAR_TARGETS: targets}
        extra = [inputs[tasks.DIFFICULTY_INPUT]] if config.core_difficulty else []
        votes = layers.Lambda(
            self._vote, name="tsa_votes",
            output_shape=lambda shapes: [tuple(shapes[1][:2]),
                                         tuple(shapes[1][:2]) + (procedure.STEPS,)])(
            [tokens, bank, targets] + extra)
        voter_scores = named(VOTER_SCORES)(votes[0])
        voter_steps = named(VOTER_STEP_CONTRIBUTIONS)(votes[1])
        self.inference_outputs = {
            tasks.SCORE_OUTPUT: layers.Lambda(lambda v: ops.mean(v, axis=-1),
                                              name=tasks.SCORE_OUTPUT)(voter_scores),
            VOTER_SCORES: voter_scores, VOTER_STEP_CONTRIBUTIONS: voter_steps,
            tasks.STEP_TRANSITIONS: named(tasks.STEP_TRANSITIONS)(own_cut),
            STEP_CONTRIBUTIONS: layers.Lambda(lambda v: ops.mean(v, axis=1),
                                              name=STEP_CONTRIBUTIONS)(voter_steps)}
        return {TSA_DELTA: delta, TSA_DELTA_REVERSE: reverse_delta,
                STEP_PROBS: named(STEP_PROBS)(query_probs),
                EXEMPLAR_STEP_PROBS: named(EXEMPLAR_STEP_PROBS)(exemplar_probs),
                PAIR_SCORE: named(PAIR_SCORE)(pair_score)}

    def _deltas(self, tokens, memory):
        return procedure.step_deltas(self.decoder, self.regressor, tokens, memory)

    def _vote(self, args):
        """Query step tokens `[N * 3, fix, d]` against each of `voters` exemplar memories
        `[N, voters, 3, fix * H'W', d]` -> (voter scores `[N, voters]`, each voter's step
        shares of the score `[N, voters, 3]`: times the difficulty with `--core_difficulty`)."""
        tokens, bank, targets = args[:3]
        voters = ops.shape(bank)[1]
        fix, dim = int(tokens.shape[1]), int(tokens.shape[2])
        steps = procedure.STEPS
        # [N, voters, 3, fix, d] -> [N * voters * 3, fix, d]: every voter sees the same query.
        query = ops.reshape(tokens, (-1, 1, steps, fix, dim))
        query = ops.repeat(query, voters, axis=1)
        query = ops.reshape(query, (-1, fix, dim))
        memory = ops.reshape(bank, (-1,) + tuple(int(v) for v in bank.shape[3:]))
        shares = self._deltas(query, ops.cast(memory, query.dtype))  # [N * voters, 3]
        shares = ops.reshape(shares, (-1, voters, steps))
        relative = ops.sum(shares, axis=-1)
        difficulty = ops.expand_dims(args[3], -1) if len(args) > 3 else None
        scores = self._to_score(ops.cast(targets, "float32") + relative, difficulty)
        return scores, (shares if difficulty is None else
                        shares * ops.expand_dims(difficulty, -1))

    def bank_encoder(self, owner) -> keras.Model:
        """Preprocessed video -> its step memory as an exemplar `[batch, 3, fix * H'W', d]`
        (the model's layers, evaluation mode): what the bank holds per exemplar."""
        return keras.Model(owner.input["video"], self.exemplar_memory)

    def losses(self, train_config):
        weight = train_config.score_loss_weight
        # The authors' loss: the two directions' squared errors summed, plus one BCE over the
        # query's and the exemplar's transitions together (the mean of the two).
        return {TSA_DELTA: (keras.losses.MeanSquaredError(), weight),
                TSA_DELTA_REVERSE: (keras.losses.MeanSquaredError(), weight),
                STEP_PROBS: (TransitionLoss(), 0.5),
                EXEMPLAR_STEP_PROBS: (TransitionLoss(), 0.5)}

    def callbacks(self, train_config):
        return [LabelSchedule(layer, self.model_config.tsa_label_fraction, train_config.epochs)
                for layer in (self.query_cut, self.exemplar_cut)]

    def synthetic_batch(self, rng, batch, x, y):
        super().synthetic_batch(rng, batch, x, y)
        frames = self.data_config.num_frames
        for name in (QUERY_TRANSITIONS, EXEMPLAR_TRANSITIONS):
            first = rng.integers(1, frames // 2, batch)
            x[name] = np.stack([first, first + rng.integers(1, frames // 2 - 1, batch)],
                               -1).astype("int32")
        relative = y.pop("core_tree")
        y.pop("core_tree_reverse", None)
        y[TSA_DELTA] = y[TSA_DELTA_REVERSE] = relative
        y[STEP_PROBS] = x[QUERY_TRANSITIONS]
        y[EXEMPLAR_STEP_PROBS] = x[EXEMPLAR_TRANSITIONS]

    def metrics(self, predictions, context):
        from aqa_tf.metrics.procedure import aiou
        result = super().metrics(predictions, context)
        true = predictions.targets.get(tasks.STEP_TRANSITIONS)
        if true is not None:
            known = np.all(true >= 0, axis=-1)
            if known.any():
                scores = aiou(true[known], predictions.outputs[tasks.STEP_TRANSITIONS][known],
                              AIOU_THRESHOLDS)
                result.update({f"aiou@{t}": float(v) for t, v in scores.items()})
        return result

    def serving_outputs(self, outputs, inputs):
        result = super().serving_outputs(outputs, inputs)
        mask = ops.cast(inputs[EXEMPLAR_MASK], "float32")
        # Each step's share averaged over the real voters (the bank row's padding excluded).
        shares = ops.cast(outputs[VOTER_STEP_CONTRIBUTIONS], "float32") * mask[..., None]
        result[STEP_CONTRIBUTIONS] = ops.sum(shares, axis=1) / ops.maximum(
            ops.sum(mask, axis=-1, keepdims=True), 1.0)
        result[tasks.STEP_TRANSITIONS] = ops.cast(outputs[tasks.STEP_TRANSITIONS], "int32")
        return result

    def metadata(self) -> Dict:
        return {**self.exemplar_metadata(), "step_names": list(STEP_NAMES),
                # The window frame of each of the model's frames, which the transitions count.
                "step_frames": [int(i * self.data_config.frame_step)
                                for i in range(self.data_config.num_frames)]}


def step_tokens(pool, sequence, cut):
    return procedure.step_tokens(pool, sequence, cut)


HEADS.register("tsa", TSAHead)
