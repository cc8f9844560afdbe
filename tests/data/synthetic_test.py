import dataclasses
import glob
import os

import numpy as np
import pytest

from aqa_tf.data import features
from aqa_tf.data import synthetic
from aqa_tf.data.synthetic import SyntheticDataConfig


def _sample(i=0, seed=0, split="train"):
    return synthetic.make_sample(split, i, seed, num_frames=40, height=48, width=64)


def test_deterministic_given_the_seed():
    a, b, c = _sample(3), _sample(3), _sample(3, seed=1)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.labels == b.labels and a.caption_words == b.caption_words
    assert not np.array_equal(a.frames, c.frames)
    assert a.frames.shape == (40, 48, 64, 3) and a.frames.dtype == np.uint8
    assert a.end_index == 40 - 1 - 3 and a.sample_key == "01_004"


def test_labels_in_range_and_score_is_difficulty_times_execution_times_three():
    for i in range(50):
        spec = _sample(i).labels
        assert 0 <= spec.position < 3 and 0 <= spec.armstand < 2
        assert 0 <= spec.rotation_type < 4 and 0 <= spec.ss_no < 10 and 0 <= spec.tw_no < 8
        assert 0 <= spec.execution <= 10
        assert spec.final_score == pytest.approx(spec.difficulty * spec.execution * 3, abs=0.01)
        assert spec.difficulty == synthetic.difficulty_of(spec.ss_no, spec.tw_no,
                                                           spec.position, spec.armstand)


def _render(spec, seed=0):
    return synthetic.render_video(spec, 40, 48, 64, 36, np.random.default_rng(seed))


def test_what_the_video_shows_follows_the_labels():
    spec = _sample(0).labels
    # A bigger splash: more near-white pixels at the water line after the entry.
    small = _render(dataclasses.replace(spec, splash_size=0.05))
    big = _render(dataclasses.replace(spec, splash_size=0.95))
    white = lambda v: (v[-8:].min(-1) > 235).sum()  # noqa: E731
    assert white(big) > 3 * white(small) > 0
    # Somersaults, twists, shape, start pose and rotation direction each change the flight.
    for field, value in (("ss_no", (spec.ss_no + 3) % 10), ("tw_no", (spec.tw_no + 3) % 8),
                         ("position", (spec.position + 1) % 3), ("armstand", 1 - spec.armstand),
                         ("rotation_type", (spec.rotation_type + 1) % 4)):
        other = _render(dataclasses.replace(spec, **{field: value}))
        diff = np.abs(other[:30].astype(int) - _render(spec)[:30].astype(int)).mean()
        assert diff > 0.05, field


def test_captions_use_the_synthetic_vocabulary():
    vocab = synthetic.synthetic_vocabulary()
    for i in range(30):
        words = _sample(i).caption_words
        ids = vocab.encode(words)
        assert ids[0] == 1 and ids[-1] == 0
        assert vocab.decode(ids) == words


def test_written_records_read_back_equal(tmp_path):
    info = synthetic.write_tfrecords(str(tmp_path), SyntheticDataConfig(
        num_train=5, num_test=3, num_frames=30, height=48, width=64, seed=4, num_shards=2),
        num_workers=1)
    assert info["histograms"]["train"]["ss_no"] and os.path.exists(tmp_path / "vocab.json")
    vocab = synthetic.synthetic_vocabulary()
    import tensorflow as tf
    for split, count in (("train", 5), ("test", 3)):
        files = sorted(glob.glob(str(tmp_path / f"{split}-*.tfrecord")))
        assert len(files) == 2
        records = [features.parse_to_numpy(r.numpy()) for r in tf.data.TFRecordDataset(files)]
        assert len(records) == count
        for record in records:
            index = int(record["sample_key"].split("_")[1]) - 1
            source = synthetic.make_sample(split, index, 4, 30, 48, 64)
            spec = source.labels
            for name in ("position", "armstand", "rotation_type", "ss_no", "tw_no"):
                assert record[name] == getattr(spec, name), name
            assert record["final_score"] == pytest.approx(spec.final_score, rel=1e-6)
            assert record["difficulty"] == pytest.approx(spec.difficulty, rel=1e-6)
            assert vocab.decode(record["caption"]) == source.caption_words
            assert record["end_index"] == source.end_index == 26
            assert record["num_frames"] == 30 and (record["height"], record["width"]) == (48, 64)
            assert record["end_frame"] - record["start_frame"] == source.end_index
            assert record["schema_version"] == features.SCHEMA_VERSION
            frames = np.stack([features.decode_jpeg(f) for f in record["frames"]])
            # JPEG error (the rendered frames carry pixel noise, which JPEG smooths).
            assert np.abs(frames.astype(int) - source.frames.astype(int)).mean() < 6


def test_ensure_dataset_generates_once(tmp_path):
    config = SyntheticDataConfig(num_train=2, num_test=1, num_frames=24, height=32, width=40,
                                 seed=0)
    assert synthetic.ensure_dataset(str(tmp_path), config)
    assert not synthetic.ensure_dataset(str(tmp_path), config)
    assert synthetic.ensure_dataset(str(tmp_path), dataclasses.replace(config, seed=1))
