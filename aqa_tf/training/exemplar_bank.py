"""The training exemplars a CoRe model (`models.heads.core`) is evaluated against."""

import zlib
from typing import Dict

import keras
import numpy as np

from aqa_tf import tasks
from aqa_tf.data import exemplars
from aqa_tf.models.heads.core import EXEMPLAR_FEATURES, EXEMPLAR_TARGETS


class ExemplarBank:
    """The training split's exemplars for evaluation: each query gets `--voters` of them of its
    match value (`data.exemplars.choose_voters`, a generator seeded by the data seed and the
    query's key, so every evaluation of a sample uses the same exemplars), as the inputs
    `exemplar_features` and `exemplar_targets`. `refresh` recomputes the training features with
    the model's current weights (evaluation mode), as the authors recompute the exemplars'
    features at every test step."""

    def __init__(self, head, model: keras.Model):
        self.head, self.model = head, model
        self.index = exemplars.read_index(head.data_config)
        self.match = head.model_config.exemplar_match
        self.targets = self.index.targets(head.model_config.core_difficulty).astype(np.float32)
        self.features = None

    def refresh(self):
        from aqa_tf.data import pipeline
        owner = getattr(self.model, "aqa_model", self.model)
        encoder = keras.Model(owner.input["video"], owner.features.pooled)
        data = pipeline.build_dataset(self.head.data_config, "train", training=False,
                                      with_keys=True)
        by_key = {}
        for inputs, _ in data:
            values = encoder.predict_on_batch(inputs["video"])
            for key, value in zip(inputs["sample_key"].numpy(), np.asarray(values)):
                by_key[key.decode("utf-8")] = value
        self.features = np.stack([by_key[k] for k in self.index.keys]).astype(np.float32)

    def voters_of(self, key: str, value: str):
        rng = np.random.default_rng([self.head.data_config.seed, zlib.crc32(key.encode())])
        return exemplars.choose_voters(self.index, self.match, value,
                                       self.head.model_config.voters, rng, exclude=key)

    def __call__(self, inputs) -> Dict[str, np.ndarray]:
        """The exemplar inputs of a batch of `inputs` (with keys and match values)."""
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


