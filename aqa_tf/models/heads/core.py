"""Contrastive regression with exemplars: CoRe (Yu et al., ICCV 2021, "Group-aware Contrastive
Regression for Action Quality Assessment"; code: github.com/yuxumin/CoRe).

The head scores a query video relative to exemplars of known score. In training every element
is a pair (query, exemplar) of the same match value (`data.exemplars`, `--exemplar_match`), whose
videos go through the same backbone and aggregation; the pair feature `[exemplar feature, query
feature, exemplar target / --core_score_range]` feeds the group-aware regression tree
(`layers.regression_tree`), which predicts the difference `query - exemplar`, and the reversed
pair `[query, exemplar, query target / range]` the difference the other way: both directions
are trained, each with the tree's loss (as the authors' `tools/helper.py`,
`network_forward_train`, and `models/Backbone.py`, whose pair features follow that order).

The target is the final score, or with `--core_difficulty` the execution (score / difficulty,
the authors' `completeness` with `usingDD`), the score then being difficulty x (exemplar
execution + difference).

At evaluation and in serving, the query is compared with `--voters` training exemplars whose
features and targets are inputs (`exemplar_features [batch, voters, dim]`, `exemplar_targets
[batch, voters]`, a bank computed from the training split:
`data.exemplar_bank.ExemplarBank`); `voter_scores` are
the scores each exemplar gives, `score` their mean (the authors' `network_forward_test`).

The tree's groups (`--core_groups`, 2 numbers per leaf) are cut from the training split's
differences between samples of the same match value (`data.exemplars.group_boundaries`) when
the model is built, unless given; they are part of the model's configuration, so a checkpoint
and an export keep the groups it was trained with.
"""

import functools
from typing import Dict, Tuple

import keras
import numpy as np
from keras import layers, ops

from aqa_tf import tasks
from aqa_tf.config import ConfigError, DataConfig, ModelConfig
from aqa_tf.data.exemplars import (EXEMPLAR_FEATURES, EXEMPLAR_TARGETS, group_boundaries,
                                   pair_deltas, read_index)
from aqa_tf.models.heads.base import Features, Head
from aqa_tf.models.heads.score import ScoreHead
from aqa_tf.models.layers.regression_tree import RegressionTree, TreeReadout
from aqa_tf.models.losses import RegressionTreeLoss
from aqa_tf.registry import HEADS

EXEMPLAR_VIDEO = "exemplar_video"
EXEMPLAR_TARGET = "exemplar_target"
QUERY_TARGET = "query_target"
CORE_TREE = "core_tree"
CORE_TREE_REVERSE = "core_tree_reverse"
PAIR_SCORE = "pair_score"
VOTER_SCORES = "voter_scores"
RELATIVE_TARGET = "relative_score"
# Serving: the dive number input, and what the bank lookup adds (`serving.export_lib`).
DIVE_NUMBER_INPUT = "dive_number"
EXEMPLAR_MASK = "exemplar_mask"
EXEMPLAR_KEYS = "exemplar_keys"
EXEMPLAR_SCORES = "exemplar_scores"
EXEMPLAR_ROW = "exemplar_group"
# TFLite: the bank row, an input (the client looks it up in the metadata).
EXEMPLAR_ROW_INPUT = "exemplar_row"
# `_bytes`: TF Serving's REST API sends such outputs base64-encoded (JPEG frames).
EXEMPLAR_THUMBNAILS = "exemplar_thumbnails_bytes"


@functools.lru_cache(maxsize=8)
def _training_groups(data_config: DataConfig, match: str, use_difficulty: bool,
                     depth: int, score_range: float) -> Tuple[float, ...]:
    try:
        index = read_index(data_config)
        index.check(match, use_difficulty)
        deltas = pair_deltas(index.targets(use_difficulty), index.groups(match))
        groups = group_boundaries(deltas, depth, score_range)
    except (ValueError, OSError, RuntimeError) as error:  # DataError: a RuntimeError
        raise ConfigError(
            f"heads=core: the tree's groups are cut from the training split "
            f"({data_config.data_dir}, {data_config.train_split}) when --core_groups is not "
            f"given, and that failed: {error}") from None
    return tuple(float(v) for v in groups.reshape(-1))


def training_groups(model_config: ModelConfig, data_config: DataConfig) -> np.ndarray:
    """The tree's groups `[leaves, 2]`: `--core_groups` when given, else cut from the training
    split of `data_config`."""
    if model_config.core_groups:
        return np.asarray(model_config.core_groups, np.float64).reshape(-1, 2)
    return np.asarray(_training_groups(data_config, model_config.exemplar_match,
                                       model_config.core_difficulty,
                                       model_config.core_tree_depth,
                                       model_config.core_score_range)).reshape(-1, 2)


@keras.saving.register_keras_serializable(package="aqa_tf")
class PairFeature(layers.Layer):
    """`[exemplar feature, query feature, exemplar target / score_range]` on the last axis."""

    def __init__(self, score_range: float = 30.0, **kwargs):
        super().__init__(**kwargs)
        self.score_range = float(score_range)

    def call(self, exemplar, query, exemplar_target):
        target = ops.cast(ops.expand_dims(exemplar_target, -1), exemplar.dtype)
        return ops.concatenate([exemplar, query, target / self.score_range], axis=-1)

    def get_config(self):
        return {**super().get_config(), "score_range": self.score_range}


class CoReHead(ScoreHead):
    """See the module docstring."""

    name = "core"
    predicts_score = True
    training_inputs = (EXEMPLAR_VIDEO, EXEMPLAR_TARGET, QUERY_TARGET)
    training_outputs = (CORE_TREE, CORE_TREE_REVERSE, PAIR_SCORE)
    target_keys = {CORE_TREE: RELATIVE_TARGET, CORE_TREE_REVERSE: RELATIVE_TARGET}
    untrained_outputs = (PAIR_SCORE,)
    compares_exemplars = True

    @classmethod
    def create(cls, model_config, data_config) -> Head:
        return cls(model_config, data_config)

    @classmethod
    def pinned_options(cls, model_config, data_config):
        if model_config.core_groups:
            return {}
        groups = training_groups(model_config, data_config)
        return {"core_groups": tuple(float(v) for v in groups.reshape(-1))}

    @classmethod
    def check_config(cls, model_config: ModelConfig):
        if model_config.core_tree_depth < 2:
            raise ConfigError(f"core_tree_depth={model_config.core_tree_depth}: a tree needs "
                              "depth >= 2")
        if model_config.core_score_range <= 0:
            raise ConfigError(f"core_score_range={model_config.core_score_range} must be "
                              "positive")
        if model_config.voters < 1:
            raise ConfigError(f"voters={model_config.voters} must be >= 1")
        leaves = 2 ** (model_config.core_tree_depth - 1)
        if model_config.core_groups and len(model_config.core_groups) != 2 * leaves:
            raise ConfigError(f"core_groups has {len(model_config.core_groups)} numbers; a tree "
                              f"of depth {model_config.core_tree_depth} needs {2 * leaves} "
                              "(left, right per leaf)")
        if model_config.multiply_difficulty:
            raise ConfigError("heads=core: use --core_difficulty, not --multiply_difficulty")

    @property
    def dataset_options(self):
        return {"exemplar_pairs": (self.model_config.exemplar_match,
                                   self.model_config.core_difficulty)}

    def add_inputs(self, inputs):
        video = inputs["video"]
        inputs[EXEMPLAR_VIDEO] = keras.Input(tuple(video.shape[1:]), name=EXEMPLAR_VIDEO)
        inputs[EXEMPLAR_TARGET] = keras.Input((), name=EXEMPLAR_TARGET)
        inputs[QUERY_TARGET] = keras.Input((), name=QUERY_TARGET)
        if self.model_config.core_difficulty:
            inputs[tasks.DIFFICULTY_INPUT] = keras.Input((), name=tasks.DIFFICULTY_INPUT)

    def build(self, features: Features) -> Dict[str, keras.KerasTensor]:
        if features.pooled is None or features.encode is None:
            raise ValueError(f"head core reads pooled clip features; backbone "
                             f"{self.model_config.backbone} gives a whole-action map")
        config = self.model_config
        self.groups = training_groups(config, self.data_config)
        inputs = features.inputs
        query = features.pooled
        exemplar = features.encode(inputs[EXEMPLAR_VIDEO])
        self.pair = PairFeature(config.core_score_range, name="core_pair")
        self.tree = RegressionTree(config.core_tree_depth, config.core_hidden, dtype="float32",
                                   name="core_tree_layer")
        self.readout = TreeReadout(self.groups, name="core_readout")
        forward = self.tree(self.pair(exemplar, query, inputs[EXEMPLAR_TARGET]))
        reverse = self.tree(self.pair(query, exemplar, inputs[QUERY_TARGET]))
        pair_score = self._to_score(inputs[EXEMPLAR_TARGET] + self.readout(forward),
                                    inputs.get(tasks.DIFFICULTY_INPUT))
        # The inference graph: the query against a bank of exemplar features.
        dim = int(query.shape[-1])
        bank = keras.Input((None, dim), name=EXEMPLAR_FEATURES)
        targets = keras.Input((None,), name=EXEMPLAR_TARGETS)
        self.inference_inputs = {EXEMPLAR_FEATURES: bank, EXEMPLAR_TARGETS: targets}
        voter_scores = layers.Lambda(self._vote, name=VOTER_SCORES)(
            [query, bank, targets] + ([inputs[tasks.DIFFICULTY_INPUT]]
                                      if config.core_difficulty else []))
        self.inference_outputs = {
            tasks.SCORE_OUTPUT: layers.Lambda(lambda v: ops.mean(v, axis=-1),
                                              name=tasks.SCORE_OUTPUT)(voter_scores),
            VOTER_SCORES: voter_scores}
        return {CORE_TREE: forward, CORE_TREE_REVERSE: reverse, PAIR_SCORE: pair_score}

    def _to_score(self, target, difficulty):
        return target if difficulty is None else target * ops.cast(difficulty, target.dtype)

    def _vote(self, args):
        query, bank, targets = args[:3]
        voters = ops.shape(bank)[1]
        repeated = ops.repeat(ops.expand_dims(query, 1), voters, axis=1)
        flat = lambda x: ops.reshape(x, (-1,) + tuple(x.shape[2:]))  # noqa: E731
        tree = self.tree(self.pair(flat(bank), flat(repeated), flat(targets)))
        relative = ops.reshape(self.readout(tree), ops.shape(targets))
        difficulty = ops.expand_dims(args[3], -1) if len(args) > 3 else None
        return self._to_score(ops.cast(targets, "float32") + relative, difficulty)

    def bank_encoder(self, owner) -> keras.Model:
        """Preprocessed video -> what the exemplar bank holds of it (`data.exemplar_bank`):
        here its pooled feature, from the model's backbone and aggregation."""
        return keras.Model(owner.input["video"], owner.features.pooled)

    def losses(self, train_config):
        weight = train_config.score_loss_weight
        return {CORE_TREE: (RegressionTreeLoss(self.groups), weight),
                CORE_TREE_REVERSE: (RegressionTreeLoss(self.groups, sign=-1.0), weight)}

    def synthetic_batch(self, rng, batch, x, y):
        x[EXEMPLAR_VIDEO] = rng.standard_normal(x["video"].shape).astype("float32")
        x[EXEMPLAR_TARGET] = rng.uniform(5, 25, batch).astype("float32")
        x[QUERY_TARGET] = rng.uniform(5, 25, batch).astype("float32")
        if self.model_config.core_difficulty:
            x[tasks.DIFFICULTY_INPUT] = rng.uniform(1.5, 3.8, batch).astype("float32")
        y[CORE_TREE] = y[CORE_TREE_REVERSE] = x[QUERY_TARGET] - x[EXEMPLAR_TARGET]

    def clip_scores(self, clip_features, inputs):
        return None  # a clip alone has no exemplar to be compared with

    # --- serving: an export carries a bank of training exemplars (`set_bank`) ---------------

    @property
    def serving_inputs(self) -> Tuple[str, ...]:
        """String `[batch]` inputs `serving_default` adds: the dive number the bank is looked up
        by, for models that match exemplars on it."""
        return (DIVE_NUMBER_INPUT,) if self.model_config.exemplar_match == "dive_number" else ()

    def set_bank(self, rows: Dict[str, np.ndarray]):
        """The exemplars an export carries (`data.exemplar_bank.ExemplarBank.rows`)."""
        self.bank = rows

    def serving_outputs(self, outputs, inputs):
        mask = ops.cast(inputs[EXEMPLAR_MASK], "float32")
        votes = ops.cast(outputs[VOTER_SCORES], "float32") * mask
        score = ops.sum(votes, axis=-1) / ops.maximum(ops.sum(mask, axis=-1), 1.0)
        strings = {k: inputs[k] for k in (EXEMPLAR_KEYS, EXEMPLAR_ROW, EXEMPLAR_THUMBNAILS)
                   if k in inputs}  # not in TFLite, which is given the row
        return {tasks.SCORE_OUTPUT: score, VOTER_SCORES: votes,
                EXEMPLAR_SCORES: ops.cast(inputs[EXEMPLAR_SCORES], "float32") * mask,
                **strings}

    def metadata(self) -> Dict:
        return {**self.exemplar_metadata(), "core_groups": self.groups.reshape(-1).tolist()}

    def exemplar_metadata(self) -> Dict:
        """What a client of a model that compares with exemplars needs (TSA's too): the
        difficulty input, the match field, the voters and the values the bank holds."""
        bank = getattr(self, "bank", None)
        return {"uses_difficulty": bool(self.model_config.core_difficulty),
                "uses_action": False, "actions": [],
                "exemplar_match": self.model_config.exemplar_match,
                "voters": int(self.model_config.voters),
                "exemplar_values": [] if bank is None else
                [v.decode() for v in bank["values"][:-1]]}


HEADS.register("core", CoReHead)
