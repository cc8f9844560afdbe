import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from aqa_tf.config import ConfigError, DataConfig
from aqa_tf.data import features
from aqa_tf.data import pipeline
from aqa_tf.data import shards

NUM_STORED, END_INDEX, H, W = 30, 25, 40, 50


def _frame(t):
    """Frame t: gray level 8*t on the left half, 0 on the right (shows flips)."""
    frame = np.zeros((H, W, 3), np.uint8)
    frame[:, : W // 2] = 8 * t
    return frame


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("records")
    jpegs = [features.encode_jpeg(_frame(t), quality=100) for t in range(NUM_STORED)]
    for split, count in (("train", 40), ("test", 6)):
        with tf.io.TFRecordWriter(str(out / shards.shard_name(split, 0, 1))) as writer:
            for i in range(count):
                sample = features.Sample(
                    sample_key=f"{split}_{i:03d}", frames=jpegs, height=H, width=W,
                    final_score=10.0 + i, difficulty=2.5, position=i % 3, armstand=1,
                    rotation_type=-1 if i == 0 else 2, ss_no=5, tw_no=0,
                    caption=[1] + [5 + i] * (i + 1) + [0] if i else [], end_index=END_INDEX)
                writer.write(features.serialize_sample(sample))
    return str(out)


def _config(data_dir, **kw):
    base = dict(data_dir=data_dir, sample_length=20, num_frames=16, clip_length=8, clip_stride=8,
                crop_size=32, batch_size=3, normalization="none", val_fraction=0.25,
                max_caption_words=4, random_flip=False)
    base.update(kw)
    return DataConfig(**base)


def _frame_ids(video):
    """Recovers the stored-frame index of every frame from its gray level."""
    return np.round(np.asarray(video)[..., 4, 4, 0] * 255.0 / 8.0).astype(int)


def test_eval_window_clips_and_targets(data_dir):
    config = _config(data_dir)
    inputs, targets = next(iter(pipeline.build_dataset(config, "test", training=False,
                                                        with_keys=True, include_caption=True)))
    assert inputs["video"].shape == (3, 2, 8, 32, 32, 3) and inputs["video"].dtype == tf.float32
    # Window of 20 ending at END_INDEX=25 starts at 6; the first 16 frames form 2 clips of 8.
    expected = np.arange(6, 22).reshape(2, 8)
    np.testing.assert_array_equal(_frame_ids(inputs["video"]), np.stack([expected] * 3))
    assert [k.decode() for k in inputs["sample_key"].numpy()] == ["test_000", "test_001",
                                                                   "test_002"]
    np.testing.assert_allclose(targets["score"], [10, 11, 12])
    np.testing.assert_array_equal(targets["rotation_type"], [-1, 2, 2])  # missing kept as -1
    np.testing.assert_array_equal(targets["position"], [0, 1, 2])
    np.testing.assert_allclose(inputs["difficulty"], [2.5] * 3)
    # Captions: empty -> all -1; cut to 4 words, still ending with <eos>; padded with -1.
    # Teacher forcing: the model reads <sos> w1..wn (padding read as <eos> = 0) and predicts
    # w1..wn <eos>.
    np.testing.assert_array_equal(targets["caption"].numpy(),
                                  [[-1] * 5, [6, 6, 0, -1, -1], [7, 7, 7, 0, -1]])
    np.testing.assert_array_equal(inputs["caption_tokens"].numpy(),
                                  [[0] * 5, [1, 6, 6, 0, 0], [1, 7, 7, 7, 0]])


def test_overlapping_clips(data_dir):
    config = _config(data_dir, clip_stride=4)  # (16 - 8) / 4 + 1 = 3 clips
    inputs, _ = next(iter(pipeline.build_dataset(config, "test", training=False)))
    np.testing.assert_array_equal(_frame_ids(inputs["video"])[0],
                                  [np.arange(6, 14), np.arange(10, 18), np.arange(14, 22)])


def test_clips_at_given_starts(data_dir):
    # USDL/MUSDL style: clips at chosen starts, overlapping (0, 3) and not (3, 8).
    config = _config(data_dir, clip_starts=(0, 3, 8))
    assert config.num_clips == 3
    inputs, _ = next(iter(pipeline.build_dataset(config, "test", training=False)))
    np.testing.assert_array_equal(_frame_ids(inputs["video"])[0],
                                  [np.arange(6, 14), np.arange(9, 17), np.arange(14, 22)])
    for starts in ((0, 3, 7), (3, 0, 8), (-1, 8), (0, 0, 8)):
        with pytest.raises(ValueError, match="clip_starts="):
            _config(data_dir, clip_starts=starts).validate()


def test_sparse_frame_step_samples_the_whole_window(data_dir):
    # MSCADC style: 8 frames at step 2.5 over a 20-frame window -> window frames
    # floor(i * 2.5) = 0, 2, 5, 7, 10, 12, 15, 17; the window starts at stored frame 6.
    config = _config(data_dir, num_frames=8, clip_length=8, clip_stride=8, frame_step=2.5)
    inputs, _ = next(iter(pipeline.build_dataset(config, "test", training=False)))
    assert inputs["video"].shape == (3, 1, 8, 32, 32, 3)
    np.testing.assert_array_equal(_frame_ids(inputs["video"])[0, 0],
                                  6 + np.array([0, 2, 5, 7, 10, 12, 15, 17]))
    with pytest.raises(ValueError, match="span"):
        _config(data_dir, num_frames=8, clip_length=8, frame_step=3.0).validate()


def test_training_jitter_stays_in_range_and_varies(data_dir):
    config = _config(data_dir, temporal_jitter=3)
    starts = []
    for inputs, _ in pipeline.build_dataset(config, "train", training=True).take(8):
        ids = _frame_ids(inputs["video"])
        starts += list(ids[:, 0, 0])
        # Consecutive frames inside each sample's window.
        np.testing.assert_array_equal(ids.reshape(len(ids), -1) - ids[:, :1, 0],
                                      np.tile(np.arange(16), (len(ids), 1)))
    offsets = np.array(starts) - 6
    assert offsets.min() >= -3 and offsets.max() <= 3 and len(set(offsets)) >= 4


def test_random_end_among_last_k(data_dir):
    config = _config(data_dir, temporal_sampling="random_end_last_k", random_end_k=5)
    offsets = []
    for inputs, _ in pipeline.build_dataset(config, "train", training=True).take(8):
        offsets += list(_frame_ids(inputs["video"])[:, 0, 0] - 6)
    assert min(offsets) >= -4 and max(offsets) <= 0 and len(set(offsets)) >= 3


def test_flip_is_one_decision_per_sample(data_dir):
    config = _config(data_dir, random_flip=True, crop_size=40)
    flipped = []
    for inputs, _ in pipeline.build_dataset(config, "train", training=True).take(6):
        video = np.asarray(inputs["video"])
        left = video[..., :, 2, 0].mean(-1)   # column 2: left unless flipped
        right = video[..., :, -3, 0].mean(-1)
        per_frame = right > left
        assert np.all(per_frame.reshape(len(video), -1) == per_frame.reshape(len(video), -1)[:, :1])
        flipped += list(per_frame[:, 0, 0])
    assert 0 < sum(flipped) < len(flipped)


def test_normalisation_values(data_dir):
    config = _config(data_dir, normalization="imagenet")
    inputs, _ = next(iter(pipeline.build_dataset(config, "test", training=False)))
    value = np.asarray(inputs["video"])[0, 0, 0, 4, 4]  # frame 6: gray 48
    expected = (48 / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(value, expected, atol=0.02)


def test_validation_carve_out(data_dir):
    config = _config(data_dir)

    def keys(split):
        ds = pipeline.build_dataset(config, split, training=False, with_keys=True)
        return [k.decode() for x, _ in ds for k in x["sample_key"].numpy()]

    train, val = keys("train"), keys("val")
    assert not set(train) & set(val)
    assert sorted(train + val) == [f"train_{i:03d}" for i in range(40)]
    assert 3 <= len(val) <= 18  # about 25 % of 40
    assert keys("val") == val  # deterministic
    assert pipeline.num_examples(config, "val") == len(val)
    other_seed = dataclasses.replace(config, val_seed=7)
    assert [k.decode() for x, _ in pipeline.build_dataset(other_seed, "val", False, True)
            for k in x["sample_key"].numpy()] != val
    with pytest.raises(ValueError, match="val_fraction"):
        pipeline.build_dataset(dataclasses.replace(config, val_fraction=0.0), "val", False)


def test_missing_shards_name_the_pattern(tmp_path):
    with pytest.raises(FileNotFoundError, match="test-\\*-of-\\*.tfrecord"):
        pipeline.build_dataset(_config(str(tmp_path)), "test", training=False)


def test_serving_preprocessing_equals_eval_pipeline(data_dir):
    config = _config(data_dir, normalization="imagenet")
    inputs, _ = next(iter(pipeline.build_dataset(config, "test", training=False)))
    # The same JPEG bytes decoded by TensorFlow, as a client would send decoded frames.
    window = np.stack([tf.io.decode_jpeg(features.encode_jpeg(_frame(t), quality=100)).numpy()
                       for t in range(6, 26)])
    served = pipeline.preprocess_video_batch(tf.constant(window[None]), config)
    np.testing.assert_allclose(np.asarray(served)[0], np.asarray(inputs["video"])[0], atol=1e-5)


def test_input_autotune_is_off_on_a_cpu_and_changes_no_sample(data_dir):
    """`--input_autotune`: 'auto' turns tf.data autotuning off where there is no GPU (this
    test machine), 'on' keeps it; the batches are the same either way."""
    assert not tf.config.list_physical_devices("GPU")
    batches = {}
    for setting, expected in (("auto", False), ("off", False), ("on", True)):
        config = _config(data_dir, input_autotune=setting)
        assert pipeline.autotunes(config) is expected
        ds = pipeline.build_dataset(config, "train", training=True, deterministic=True)
        assert ds.options().autotune.enabled is (None if expected else False)
        batches[setting] = [(x["video"].numpy(), y["score"].numpy()) for x, y in ds]
    for setting in ("off", "on"):
        assert len(batches[setting]) == len(batches["auto"]) > 0
        for (video, score), (video0, score0) in zip(batches[setting], batches["auto"]):
            np.testing.assert_array_equal(video, video0)
            np.testing.assert_array_equal(score, score0)
    with pytest.raises(ConfigError, match="input_autotune='fast'"):
        _config(data_dir, input_autotune="fast").validate()
