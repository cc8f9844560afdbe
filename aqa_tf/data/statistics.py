"""Statistics of a dataset's training split, read from the record contexts only (no frame
decoding): the score range that R-l2 is relative to and the per-action score statistics of
paper 003's normalisation."""

import dataclasses
from typing import Dict, Tuple

import numpy as np

from aqa_tf.config import DataConfig


def read_scores(data_config: DataConfig, split: str) -> np.ndarray:
    """Final scores of the records of `split` (a shard prefix, or a comma-separated list of them:
    `shards.shard_files`), read from the record contexts only (no frame decoding); missing
    scores are left out."""
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


def with_action_statistics(data_config: DataConfig) -> DataConfig:
    """`data_config` with the per-action statistics its normalisation needs, measured on its
    training records: `action_score_std`, and `action_score_mean` when it standardises
    (unchanged when it does not normalise per action or already has them)."""
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
