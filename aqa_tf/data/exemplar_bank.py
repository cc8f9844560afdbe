"""The training exemplars a contrastive-regression model (CoRe, `models.heads.core`) compares
a query with, outside training: evaluation's voters and the bank an export carries.

The bank holds every training sample's feature (from `encoder`, a function of a batch of
preprocessed videos: the model's backbone and aggregation in evaluation mode) and target
(score, or execution with the difficulty protocol), in `data.exemplars.read_index`'s order.
"""

import zlib
from typing import Callable, Dict, List

import numpy as np

from aqa_tf import tasks
from aqa_tf.config import DataConfig
from aqa_tf.data import exemplars
from aqa_tf.data.exemplars import EXEMPLAR_FEATURES, EXEMPLAR_TARGETS

# The row of an export's bank used for a match value it does not hold: exemplars of any type.
ANY_ROW = "*"


class ExemplarBank:
    """See the module docstring.

    Args:
      data_config: the dataset (its training split gives the exemplars).
      match, use_difficulty, voters: the head's `--exemplar_match`, `--core_difficulty`,
        `--voters`.
      encoder: preprocessed videos `[batch, clips, ...]` -> features `[batch, dim]`.
    """

    def __init__(self, data_config: DataConfig, match: str, use_difficulty: bool, voters: int,
                 encoder: Callable):
        self.data_config, self.match, self.voters = data_config, match, int(voters)
        self.encoder = encoder
        self.index = exemplars.read_index(data_config)
        self.index.check(match, use_difficulty)
        self.targets = self.index.targets(use_difficulty).astype(np.float32)
        self.features = None

    def refresh(self):
        """(Re)computes every training sample's feature with the encoder's current weights
        (the authors recompute the exemplars' features at every test step)."""
        from aqa_tf.data import pipeline
        data = pipeline.build_dataset(self.data_config, "train", training=False,
                                      with_keys=True)
        by_key = {}
        for inputs, _ in data:
            values = np.asarray(self.encoder(inputs["video"]))
            for key, value in zip(inputs["sample_key"].numpy(), values):
                by_key[key.decode("utf-8")] = value
        self.features = np.stack([by_key[k] for k in self.index.keys]).astype(np.float32)

    def voters_of(self, key: str, value: str) -> List[int]:
        """The voters of query `key` of match value `value` (seeded by the data seed and the
        key: the same at every evaluation; never the query itself)."""
        rng = np.random.default_rng([self.data_config.seed, zlib.crc32(key.encode())])
        return exemplars.choose_voters(self.index, self.match, value, self.voters, rng,
                                       exclude=key)

    def __call__(self, inputs) -> Dict[str, np.ndarray]:
        """The exemplar inputs of a batch of evaluation `inputs` (numpy, with the keys and the
        match fields `build_dataset(with_keys=True)` gives)."""
        if self.features is None:
            self.refresh()
        keys = [k.decode("utf-8") for k in np.asarray(inputs["sample_key"])]
        values = [exemplars.match_value(self.match, d.decode("utf-8"), f, a) for d, f, a in zip(
            np.asarray(inputs["dive_number"]), np.asarray(inputs[tasks.DIFFICULTY_INPUT]),
            np.asarray(inputs[tasks.ACTION_INPUT]))]
        chosen = [self.voters_of(k, v) for k, v in zip(keys, values)]
        count = min(len(c) for c in chosen)
        chosen = np.asarray([c[:count] for c in chosen])
        return {EXEMPLAR_FEATURES: self.features[chosen], EXEMPLAR_TARGETS: self.targets[chosen]}

    def rows(self) -> Dict[str, np.ndarray]:
        """The bank an export carries: one row per match value of the training split (sorted)
        and a last row `ANY_ROW` (exemplars of any type, for values the split lacks), each of
        `voters` exemplars chosen as evaluation chooses them (a generator seeded by the data
        seed and the value), padded where a value has fewer.

        Returns numpy arrays: `values` string `[rows]`, `features` float32 `[rows, voters,
        dim]`, `targets` float32 `[rows, voters]`, `scores` float32 `[rows, voters]` (final
        scores), `keys` string `[rows, voters]` (b"" where padded), `mask` float32 `[rows,
        voters]` (1 for an exemplar, 0 for padding), `thumbnails` string `[rows, voters]` (the
        JPEG of each exemplar's stored frame at the middle of its window; b"" where padded).
        """
        if self.features is None:
            self.refresh()
        values = sorted(set(self.index.match_values(self.match)) - {""})
        rows = []
        for value in values + [ANY_ROW]:
            rng = np.random.default_rng([self.data_config.seed, zlib.crc32(value.encode())])
            rows.append(exemplars.choose_voters(self.index, "any" if value == ANY_ROW
                                                else self.match, "" if value == ANY_ROW
                                                else value, self.voters, rng))
        shape = (len(rows), self.voters)
        out = {"values": np.asarray([v.encode() for v in values + [ANY_ROW]], object),
               "features": np.zeros(shape + self.features.shape[1:], np.float32),
               "targets": np.zeros(shape, np.float32), "scores": np.zeros(shape, np.float32),
               "keys": np.full(shape, b"", object), "mask": np.zeros(shape, np.float32),
               "thumbnails": np.full(shape, b"", object)}
        thumbnails = self.thumbnails({self.index.keys[i] for chosen in rows for i in chosen})
        for r, chosen in enumerate(rows):
            n = len(chosen)
            out["features"][r, :n] = self.features[chosen]
            out["targets"][r, :n] = self.targets[chosen]
            out["scores"][r, :n] = self.index.scores[chosen]
            out["keys"][r, :n] = [self.index.keys[i].encode() for i in chosen]
            out["thumbnails"][r, :n] = [thumbnails[self.index.keys[i]] for i in chosen]
            out["mask"][r, :n] = 1.0
        return out

    def thumbnails(self, keys) -> Dict[str, bytes]:
        """Key -> the JPEG of the stored frame at the middle of the sample's window."""
        from aqa_tf.data import pipeline
        out = {}
        for window in pipeline.serving_windows(self.data_config, "train").as_numpy_iterator():
            key = window["sample_key"].decode("utf-8")
            if key in keys:
                out[key] = window["frames"][len(window["frames"]) // 2]
        return out
