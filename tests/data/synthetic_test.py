import dataclasses
import glob
import os

import numpy as np
import pytest

from aqa_tf.data import features
from aqa_tf.data import synthetic
from aqa_tf.config import ConfigError
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


def test_caption_facts_read_back_the_labels():
    """`caption_facts` (what tests/train_test.py compares generated commentaries with) reads
    each caption's facts back as its labels say them."""
    for i in range(60):
        sample = _sample(i)
        spec, facts = sample.labels, synthetic.caption_facts(" ".join(sample.caption_words))
        assert facts["armstand"] == bool(spec.armstand)
        assert facts["rotation"] == synthetic.ROTATION_NAMES[spec.rotation_type]
        assert facts["somersaults"] == synthetic._HALF_WORDS[spec.ss_no]
        assert facts["twists"] == (synthetic._HALF_WORDS[spec.tw_no] if spec.tw_no else "none")
        assert facts["position"] == synthetic.POSITION_NAMES[spec.position]
        assert facts["air"] == ("steady" if spec.wobble < 0.15 else "loose")
        assert None not in facts.values(), facts


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


# --- Steps (take-off, flight, entry) and few dive types: opt-in, off = the records of before ---

def _canonical_digest(record: bytes) -> str:
    """sha256 of a record in deterministic serialization (the context is a protobuf map,
    which `SerializeToString` writes in an order that changes from process to process)."""
    import hashlib
    import tensorflow as tf
    example = tf.train.SequenceExample.FromString(record)
    return hashlib.sha256(example.SerializeToString(deterministic=True)).hexdigest()


def _record(sample, judges=False, **kwargs):
    jpegs = [features.encode_jpeg(f, 90) for f in sample.frames]
    return synthetic.to_record(sample, jpegs, synthetic.synthetic_vocabulary(), judges, **kwargs)


# Computed with the generator before `steps` and `dive_types` (commit 4970bae).
_DIGESTS_BEFORE_OPTIONS = {
    ("train", 0, 0, False): "74f5d5793eb1636cde2dfb0f278506c04e5acea24def7ad16781ea3a7661a044",
    ("train", 0, 0, True): "74bad9790c86590aa5bd60ef808f66d7e6168f11fb4e08dfbeed19380b37a659",
    ("test", 2, 7, False): "58dceaede369e93979a6d92acaedd33e998db971db48790735e2e0772101b3bc",
    ("test", 2, 7, True): "7576c786267719def89708d41a48c4cb851c7de05a26159e87a427f72da0999c",
}


def test_records_without_the_options_are_those_of_before():
    for (split, index, seed, judges), digest in _DIGESTS_BEFORE_OPTIONS.items():
        sample = synthetic.make_sample(split, index, seed, 24, 32, 40)
        assert not sample.frame_step_labels and not sample.step_transitions
        assert _canonical_digest(_record(sample, judges)) == digest, (split, index, judges)
    info = SyntheticDataConfig().info()
    assert "steps" not in info and "dive_types" not in info
    assert synthetic.dive_steps(40, 36)[1] == [9, 29]  # the fixed timing: 10 of 37 frames on
    # the platform


def _diver(frames):
    """`[T, H, W]` mask of the diver's pixels: its orange front or purple back (the sky, the
    water, the platform and the splash are grey or blue)."""
    f = frames.astype(int)
    red, green, blue = f[..., 0], f[..., 1], f[..., 2]
    return (red - blue > 60) | ((red > 100) & (green < 80))


def _splash(frames):
    """`[T]`: near-white pixels per frame (the splash is (247, 247, 255); nothing else has
    every channel over 200, the diver's edges against the sky at most ~195)."""
    return (frames.min(-1) > 225).sum((1, 2))


def test_steps_follow_what_the_frames_show():
    T, H, W = 40, 48, 64
    platform_x = 0.36 * W
    for i in range(8):
        sample = synthetic.make_sample("train", i, 0, T, H, W, steps=True)
        labels, (takeoff_end, flight_end) = np.array(sample.frame_step_labels), \
            sample.step_transitions
        assert labels.tolist() == [0] * (takeoff_end + 1) + [1] * (flight_end - takeoff_end) \
            + [2] * (T - 1 - flight_end)
        diver = _diver(sample.frames)
        count = diver.sum((1, 2))
        centre_x = np.array([np.nonzero(m)[1].mean() if m.any() else np.nan for m in diver])
        off_start_pose = (diver ^ diver[0]).sum((1, 2))  # pixels that differ from frame 0
        # Take-off: the diver stands still on the platform (only pixel noise changes)...
        assert (count[:takeoff_end + 1] > 50).all(), i
        assert (centre_x[:takeoff_end + 1] < platform_x).all(), i
        assert (off_start_pose[:takeoff_end + 1] <= 10).all(), (i, off_start_pose)
        # ... leaves that pose from the first flight frame on (it straightens, then flies),
        # and is off the platform, over the water, at the end of the flight ...
        assert (off_start_pose[takeoff_end + 1:flight_end + 1] >= 30).all(), (i, off_start_pose)
        assert count[flight_end] > 10 and centre_x[flight_end] > platform_x, i
        # ... and is gone in the splash, which starts right after the flight.
        assert (count[flight_end + 1:] == 0).all(), (i, count)
        splash = _splash(sample.frames)
        assert (splash[:flight_end + 1] == 0).all() and (splash[flight_end + 1:] > 0).all(), \
            (i, splash)


def test_steps_vary_between_dives_and_keep_the_labels():
    transitions = []
    for i in range(12):
        plain = synthetic.make_sample("train", i, 0, 40, 24, 32)
        stepped = synthetic.make_sample("train", i, 0, 40, 24, 32, steps=True)
        assert stepped.labels == plain.labels and stepped.caption_words == plain.caption_words
        assert stepped.judge_scores == plain.judge_scores
        transitions.append(tuple(stepped.step_transitions))
    takeoffs, entries = zip(*transitions)
    assert len(set(takeoffs)) >= 4 and len(set(entries)) >= 3, transitions
    # 12..48% of the 37-frame action on the platform, a splash of 4 frames or more.
    assert min(takeoffs) >= 0 and max(entries) <= 36 - 4
    assert all(e - t >= 6 for t, e in transitions)


def _read_records(folder, split):
    import tensorflow as tf
    files = sorted(glob.glob(os.path.join(folder, f"{split}-*.tfrecord")))
    return [r.numpy() for r in tf.data.TFRecordDataset(files)]


def test_records_with_steps_read_back_in_the_finediving_keys(tmp_path):
    config = SyntheticDataConfig(num_train=3, num_test=2, num_frames=30, height=32, width=40,
                                 seed=2, num_shards=1, steps=True)
    info = synthetic.write_tfrecords(str(tmp_path), config, num_workers=1)
    assert info["steps"] is True
    for split, count in (("train", 3), ("test", 2)):
        records = _read_records(str(tmp_path), split)
        assert len(records) == count
        for raw in records:
            record = features.parse_to_numpy(raw)
            index = int(record["sample_key"].split("_")[1]) - 1
            source = synthetic.make_sample(split, index, 2, 30, 32, 40, steps=True)
            labels = record["frame_step_labels"]
            assert labels == source.frame_step_labels and len(labels) == record["num_frames"]
            transitions = record["step_transitions"]
            # FineDiving's convention: the last frame of each step but the last.
            assert transitions == source.step_transitions
            assert transitions == [t for t in range(29) if labels[t] != labels[t + 1]]
            assert 0 <= transitions[0] < transitions[1] < record["end_index"] < 30
            assert record["step_label_ids"] == [0, 1, 2]
            assert record["step_label_names"] == ["take-off", "flight", "entry"]
            assert record["frame_positions"] == list(range(30))
            assert record["dive_number"] == "" and record["judge_scores"] == []
            graph = features.parse_sequence_example(raw)
            assert graph["frame_step_labels"].numpy().tolist() == labels


def test_few_dive_types(tmp_path):
    pool = synthetic.dive_type_pool(0, 3)
    assert len(set(pool)) == 3 and pool == synthetic.dive_type_pool(0, 3)
    spec, every = _sample().labels, synthetic.dive_type_pool(0, synthetic.NUM_DIVE_TYPES)
    assert len({synthetic.dive_number_of(synthetic.with_dive_type(spec, t))
                for t in every}) == synthetic.NUM_DIVE_TYPES
    config = SyntheticDataConfig(num_train=12, num_test=6, num_frames=20, height=24, width=32,
                                 seed=0, num_shards=1, dive_types=3)
    synthetic.write_tfrecords(str(tmp_path), config, num_workers=1)
    numbers = {}
    for split in ("train", "test"):
        records = [features.parse_to_numpy(r) for r in _read_records(str(tmp_path), split)]
        numbers[split] = {r["dive_number"] for r in records}
        for r in records:
            dive_type = tuple(r[name] for name in ("position", "armstand", "rotation_type",
                                                    "ss_no", "tw_no"))
            assert dive_type in pool
            assert r["difficulty"] == pytest.approx(synthetic.difficulty_of(
                r["ss_no"], r["tw_no"], r["position"], r["armstand"]))
            index = int(r["sample_key"].split("_")[1]) - 1
            execution = synthetic.make_sample(split, index, 0, 20, 24, 32).labels.execution
            assert r["final_score"] == pytest.approx(r["difficulty"] * execution * 3, abs=0.01)
            assert r["frame_step_labels"] == []
    assert len(numbers["train"] | numbers["test"]) <= 3 and "" not in numbers["train"]
    assert numbers["test"] <= numbers["train"]  # each test dive has exemplars of its number
    with pytest.raises(ConfigError, match="dive_types=1921"):
        dataclasses.replace(config, dive_types=1921).validate()


def test_ensure_dataset_remakes_when_an_option_changes(tmp_path):
    config = SyntheticDataConfig(num_train=2, num_test=1, num_frames=24, height=32, width=40,
                                 seed=0, num_shards=1)
    assert synthetic.ensure_dataset(str(tmp_path), config)
    assert not synthetic.ensure_dataset(str(tmp_path), config)
    stepped = dataclasses.replace(config, steps=True)
    assert synthetic.ensure_dataset(str(tmp_path), stepped)
    assert not synthetic.ensure_dataset(str(tmp_path), stepped)
    assert synthetic.ensure_dataset(str(tmp_path), config)  # the dataset without steps again
