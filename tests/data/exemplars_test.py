"""CoRe's exemplars in the input pipeline: training pairs share their match value, the same seed
gives the same pairs, and evaluation's voters are training samples only."""

import collections

import numpy as np
import pytest
import tensorflow as tf

from aqa_tf.config import DataConfig
from aqa_tf.data import exemplars, features, pipeline


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    from aqa_tf.data import synthetic
    folder = str(tmp_path_factory.mktemp("exemplar_records"))
    synthetic.write_tfrecords(folder, synthetic.SyntheticDataConfig(
        num_train=48, num_test=12, num_frames=20, height=32, width=40), judges=True)
    return folder


def _config(records, seed=0):
    return DataConfig(data_dir=records, train_split="train", test_split="test",
                      stored_height=32, stored_width=40, sample_length=16, num_frames=16,
                      clip_length=16, clip_stride=16, crop_size=28, batch_size=4,
                      val_fraction=0.0, temporal_jitter=1, seed=seed)


def _pairs(config, match):
    ds = pipeline._records(config, "train", True, deterministic=True)
    ds = ds.shuffle(config.shuffle_buffer, seed=config.seed)
    spec = {k: features.CONTEXT_SPEC[k] for k in (features.SAMPLE_KEY, features.DIVE_NUMBER,
                                                  features.DIFFICULTY)}

    def keys(pair):
        return tf.stack([tf.io.parse_single_sequence_example(pair[i], spec)[0][
            features.SAMPLE_KEY] for i in range(2)])

    return [tuple(k.decode() for k in p) for p in
            pipeline.paired_records(ds, match, config.seed).map(keys).as_numpy_iterator()]


@pytest.mark.parametrize("match", ["dive_number", "difficulty", "any"])
def test_training_pairs_share_their_match_value_and_cover_the_split(records, match):
    config = _config(records)
    index = exemplars.read_index(config)
    value = dict(zip(index.keys, index.match_values(match)))
    pairs = _pairs(config, match)
    assert all(value[q] == value[e] for q, e in pairs)
    # Every training sample is in exactly one pair (an odd one out is paired with itself).
    members = collections.Counter(k for q, e in pairs for k in ((q,) if q == e else (q, e)))
    assert sorted(members) == sorted(index.keys) and set(members.values()) == {1}
    assert len(pairs) == exemplars.num_pairs(config, match)
    if match == "any":
        assert all(q != e for q, e in pairs)  # 48 samples: no one is left alone


def test_the_same_seed_gives_the_same_pairs(records):
    assert _pairs(_config(records, 3), "any") == _pairs(_config(records, 3), "any")
    assert _pairs(_config(records, 3), "any") != _pairs(_config(records, 4), "any")


def test_paired_batches_carry_the_exemplar_and_the_difference(records):
    config = _config(records)
    ds = pipeline.build_dataset(config, "train", training=True,
                                exemplar_pairs=("difficulty", True))
    (inputs, targets), = ds.take(1)
    assert inputs["exemplar_video"].shape == inputs["video"].shape == (4, 1, 16, 28, 28, 3)
    np.testing.assert_allclose(targets["relative_score"],
                               inputs["query_target"] - inputs["exemplar_target"], rtol=1e-6)
    # Executions (score / difficulty): the synthetic scores are difficulty x execution x 3.
    np.testing.assert_allclose(inputs["query_target"],
                               targets["score"] / inputs["difficulty"], rtol=1e-5)
    assert np.all(inputs["query_target"] <= 30.0)


def test_voters_are_training_samples_of_the_query_value(records):
    config = _config(records)
    index = exemplars.read_index(config)
    test_keys = set(exemplars.read_index(config, "test").keys)
    values = index.match_values("difficulty")
    rng = np.random.default_rng(0)
    for value in set(values):
        chosen = exemplars.choose_voters(index, "difficulty", value, 10, rng)
        assert chosen and all(values[i] == value for i in chosen)
        assert not {index.keys[i] for i in chosen} & test_keys
        assert len(chosen) == min(10, values.count(value))
    # A value no training sample has: voters from the whole training split.
    chosen = exemplars.choose_voters(index, "difficulty", "9.99", 10, rng)
    assert len(chosen) == 10 and not {index.keys[i] for i in chosen} & test_keys
    # A training sample as query is never its own exemplar.
    key = index.keys[0]
    chosen = exemplars.choose_voters(index, "any", "", 100, rng, exclude=key)
    assert key not in {index.keys[i] for i in chosen} and len(chosen) == len(index) - 1


