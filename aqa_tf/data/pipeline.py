"""The tf.data input pipeline: records -> (inputs, targets) batches.

Three stages, as in the TF Model Garden video input path:
  decode   (`features.parse_sequence_example`): record bytes -> JPEG strings + labels;
  parse    (`parse_sample`): temporal window, clip cutting, JPEG decoding of the frames in use,
           crop/resize, flip, normalisation -> model tensors;
  batch    (`build_dataset`): sharded interleaved reading, shuffling, batching, prefetching.

Everything runs inside the TensorFlow graph with AUTOTUNE parallelism (no Python per frame).
"""

import dataclasses
from typing import Dict, Optional, Tuple

import tensorflow as tf

from aqa_tf import devices
from aqa_tf import tasks
from aqa_tf.config import ConfigError, DataConfig
from aqa_tf.data import features
from aqa_tf.data import shards
from aqa_tf.registry import NORMALIZATIONS

_HASH_BUCKETS = 1_000_000


def clip_indices(config: DataConfig) -> tf.Tensor:
    """Window-relative frame indices of every clip: int32 `[num_clips, clip_length]`.

    Clips start `clip_stride` frames apart, or at `clip_starts` (which may overlap: USDL's 10
    clips of a 103-frame window). With `frame_step` > 1, clip position `i` is window frame
    `floor(i * frame_step)`."""
    if config.clip_starts:
        starts = tf.constant(config.clip_starts, tf.int32)
    else:
        starts = tf.range(config.num_clips) * config.clip_stride
    positions = starts[:, None] + tf.range(config.clip_length)[None, :]
    if config.frame_step == 1.0:
        return positions
    return tf.cast(tf.floor(tf.cast(positions, tf.float64) * config.frame_step), tf.int32)


def window_end(end_index: tf.Tensor, num_stored: tf.Tensor, config: DataConfig, training: bool,
               seed: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Index (into the stored frames) of the last frame of the sample's window.

    Evaluation: the annotated end frame. Training, 'jitter': end + U{-J..J} (MTL-AQA reference,
    J=3). Training, 'random_end_last_k': end - U{0..k-1} (paper 002). Clamped so the window
    stays inside the stored frames when they are long enough.
    """
    end = tf.where(end_index >= 0, end_index, num_stored - 1)
    if training:
        if config.temporal_sampling == "jitter":
            low, high = -config.temporal_jitter, config.temporal_jitter + 1
        else:
            low, high = -(config.random_end_k - 1), 1
        end += tf.random.stateless_uniform([], seed, low, high, dtype=tf.int64)
    return tf.clip_by_value(end, tf.minimum(tf.constant(config.window_length - 1, tf.int64),
                                            num_stored - 1),
                            num_stored - 1)


def _crop_window(height, width, crop):
    """Offsets and size of the centered square crop (or the whole frame if it is smaller)."""
    crop_h, crop_w = tf.minimum(crop, height), tf.minimum(crop, width)
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def _to_model_frames(frames_uint8: tf.Tensor, config: DataConfig) -> tf.Tensor:
    """Resize (optional), center crop, [0,1] scaling and normalisation of `[N, H, W, 3]` uint8.

    Used by both the training/eval pipeline and the serving function, so they agree.
    """
    frames = frames_uint8
    if config.resize_height > 0 and config.resize_width > 0:
        # Resized as float32 (the same values as from uint8; TFLite's RESIZE_BILINEAR has no
        # uint8-in, float-out form).
        frames = tf.image.resize(tf.cast(frames, tf.float32),
                                 [config.resize_height, config.resize_width], method="bilinear")
    shape = tf.shape(frames)
    height, width = shape[1], shape[2]
    short = tf.minimum(height, width)
    crop = config.crop_size

    def upscale():
        scale = tf.cast(crop, tf.float32) / tf.cast(short, tf.float32)
        size = tf.cast(tf.math.ceil(tf.cast([height, width], tf.float32) * scale), tf.int32)
        return tf.image.resize(tf.cast(frames, tf.float32), size, method="bilinear")

    frames = tf.cond(short < crop, upscale, lambda: tf.cast(frames, tf.float32))
    shape = tf.shape(frames)
    top = (shape[1] - crop) // 2
    left = (shape[2] - crop) // 2
    frames = frames[:, top:top + crop, left:left + crop, :]
    mean, std = NORMALIZATIONS.get(config.normalization, "normalization")
    frames = (frames / 255.0 - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
    return frames


def black_frame(config: DataConfig) -> tf.Tensor:
    """A black frame after normalisation, `[1, 1, 3]`: the padding of `pad_mode=zeros`."""
    mean, std = NORMALIZATIONS.get(config.normalization, "normalization")
    return tf.reshape((0.0 - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32),
                      [1, 1, 3])


def action_score_table(config: DataConfig):
    """`action_score_std` of a per-action normalised configuration (checked)."""
    if not config.action_score_std:
        raise ConfigError("score_normalization=per_action needs the per-action score standard "
                          "deviations of the training split (statistics.with_action_statistics)")
    return config.action_score_std


def _decode_frames(jpegs: tf.Tensor, height: tf.Tensor, width: tf.Tensor,
                   config: DataConfig) -> tf.Tensor:
    """Decodes `[N]` JPEG strings to uint8 `[N, h, w, 3]`.

    When no resize is configured and the stored frames are at least as large as the crop, only
    the center crop window is decoded (`tf.image.decode_and_crop_jpeg`), which is faster.
    """
    crop = config.crop_size
    direct_crop = (config.resize_height <= 0 or config.resize_width <= 0)
    if direct_crop:
        def decode(jpeg):
            top, left, ch, cw = _crop_window(tf.cast(height, tf.int32), tf.cast(width, tf.int32),
                                             crop)
            return tf.image.decode_and_crop_jpeg(jpeg, tf.stack([top, left, ch, cw]), channels=3)
    else:
        def decode(jpeg):
            return tf.io.decode_jpeg(jpeg, channels=3)
    return tf.map_fn(decode, jpegs, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
                     parallel_iterations=16)


def judge_scores_target(judges: tf.Tensor, num_judges: int = features.NUM_JUDGES) -> tf.Tensor:
    """A record's `judge_scores` (float `[n]`) -> float32 `[num_judges]`: the scores when the
    sample has a panel of `num_judges` (the model's: MTL-AQA 7, JIGSAWS' 6 GRS elements), else
    -1.0 for every judge (a head masks them out)."""
    judges = tf.cast(judges, tf.float32)
    full = tf.equal(tf.size(judges), num_judges)
    missing = tf.fill([num_judges], features.MISSING_FLOAT)
    judges = tf.cond(full, lambda: tf.reshape(judges, [num_judges]), lambda: missing)
    return tf.ensure_shape(judges, [num_judges])


def parse_sample(record: Dict[str, tf.Tensor], config: DataConfig, training: bool,
                 seed: Optional[tf.Tensor] = None, include_caption: bool = False,
                 with_keys: bool = False, include_judges: bool = False,
                 num_judges: int = features.NUM_JUDGES, include_steps: bool = False
                 ) -> Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]]:
    """One parsed record -> `(inputs, targets)` of one sample (see `build_dataset`)."""
    jpegs = record[features.FRAMES]
    num_stored = tf.cast(tf.shape(jpegs)[0], tf.int64)
    if seed is None:
        seed = tf.constant([config.seed, 0], tf.int64)
    end = window_end(record[features.END_INDEX], num_stored, config, training,
                     seed=seed)
    # Window-relative clip frames -> stored-frame indices; a window longer than the stored
    # video starts with copies of the first frame.
    relative = tf.cast(clip_indices(config), tf.int64)
    wanted = end - config.window_length + 1 + relative
    stored = tf.maximum(wanted, 0)
    flat = tf.reshape(stored, [-1])
    unique, position = tf.unique(flat)
    frames = _decode_frames(tf.gather(jpegs, unique), record[features.HEIGHT],
                            record[features.WIDTH], config)
    frames = _to_model_frames(frames, config)
    if training and config.random_flip:
        flip = tf.random.stateless_uniform([], seed + 1, 0, 2, dtype=tf.int32)
        frames = tf.cond(flip > 0, lambda: tf.reverse(frames, axis=[2]), lambda: frames)
    video = tf.gather(frames, position)
    if config.pad_mode == "zeros":  # frames before the video's first are black
        before = tf.reshape(wanted < 0, [-1, 1, 1, 1])
        video = tf.where(before, black_frame(config), video)
    video = tf.reshape(video, [config.num_clips, config.clip_length, config.crop_size,
                               config.crop_size, 3])
    action = tf.cast(record[features.ACTION_ID], tf.int32)
    inputs = {"video": video,
              "difficulty": tf.cast(record[features.DIFFICULTY], tf.float32),
              tasks.ACTION_INPUT: action}
    if with_keys:
        inputs["sample_key"] = record[features.SAMPLE_KEY]
        inputs["action_name"] = record[features.ACTION_NAME]  # b"" where the record has none
        inputs[features.DIVE_NUMBER] = record[features.DIVE_NUMBER]  # b"" where unknown
    score = tf.cast(record[features.FINAL_SCORE], tf.float32)
    targets = {tasks.SCORE_OUTPUT: score}
    if config.per_action_scores:
        std = tf.gather(tf.constant(action_score_table(config), tf.float32), action)
        mean = (tf.gather(tf.constant(config.action_score_mean, tf.float32), action)
                if config.action_score_mean else 0.0)
        # Standardised targets are signed: a missing score (< 0) becomes NaN, which the loss
        # masks.
        targets[tasks.NORMALIZED_SCORE_OUTPUT] = tf.where(score >= 0, (score - mean) / std,
                                                          float("nan"))
    for label, output in features.CLASS_LABEL_TO_OUTPUT.items():
        targets[output] = tf.cast(record[label], tf.int32)
    if include_caption:
        # Teacher forcing: the model reads `<sos> w1 .. wn` and predicts `w1 .. wn <eos>`.
        tokens = cut_and_pad_caption(record[features.CAPTION], config.max_caption_words)
        inputs[tasks.CAPTION_TOKENS] = tf.maximum(tokens[:-1], 0)
        targets[tasks.CAPTION_OUTPUT] = tokens[1:]
    if include_judges:
        targets[features.JUDGE_SCORES] = judge_scores_target(record[features.JUDGE_SCORES],
                                                             num_judges)
    if include_steps:
        targets[tasks.STEP_TRANSITIONS] = window_transitions(record, end, config)
    return inputs, targets


def window_transitions(record: Dict[str, tf.Tensor], end: tf.Tensor,
                       config: DataConfig) -> tf.Tensor:
    """The two step transitions of a record within the model's `num_frames` frames of the
    window ending at stored frame `end`: int32 `[2]`, the first frame of the second step and
    the first frame of the last one (`[-1, -1]` for a record without step labels).

    As FineDiving's `datasets/FineDiving_Pair.py` (`load_video`, plus 1 in `tools/runner.py`):
    the labels of the frames in use, in order, and their first appearances; the transitions
    are the first appearance of the second label and of the last (equal when the window shows
    two steps only; `[n - 1, n - 1]` when it shows one). A stored frame's label is
    `frame_step_labels[frame_positions[i]]`, or `frame_step_labels[i]` for records without
    positions (one label per stored frame: the synthetic dives)."""
    labels = record[features.FRAME_STEP_LABELS]
    positions = record[features.FRAME_POSITIONS]
    count = tf.size(labels, out_type=tf.int64)
    frame = tf.cast(tf.floor(tf.range(config.num_frames, dtype=tf.float64) * config.frame_step),
                    tf.int64)
    stored = tf.maximum(end - config.window_length + 1 + frame, 0)
    num_positions = tf.size(positions, out_type=tf.int64)
    index = tf.cond(num_positions > 0,
                    lambda: tf.gather(positions, tf.minimum(stored, num_positions - 1)),
                    lambda: stored)
    padded = tf.concat([labels, [-1]], 0)  # gathers stay valid for records without labels
    safe = tf.gather(padded, tf.clip_by_value(index, 0, tf.maximum(count - 1, 0)))
    n = config.num_frames
    # A frame's label is new when no earlier frame has it.
    earlier = tf.linalg.band_part(tf.ones([n, n], tf.bool), -1, 0) & ~tf.eye(n, dtype=tf.bool)
    seen = tf.reduce_any(tf.equal(safe[:, None], safe[None, :]) & earlier, axis=1)
    new = tf.cast(tf.where(~seen[1:])[:, 0] + 1, tf.int32)
    last = tf.constant(n - 1, tf.int32)
    found = tf.size(new) > 0
    transitions = tf.cond(found, lambda: tf.stack([new[0], new[-1]]),
                          lambda: tf.stack([last, last]))
    return tf.where(count > 0, transitions, tf.constant([-1, -1], tf.int32))


def cut_and_pad_caption(ids: tf.Tensor, max_words: int) -> tf.Tensor:
    """`<sos> w1..wn <eos>` -> int32 `[max_words + 2]`: at most `max_words` words, still ending
    with `<eos>` (as `captions.cut_caption`), padded with -1. An empty caption is all -1."""
    ids = tf.cast(ids, tf.int32)
    words = tf.boolean_mask(ids, tf.logical_and(ids != tasks.EOS_ID, ids != tasks.SOS_ID))
    words = words[:max_words]
    cut = tf.concat([[tasks.SOS_ID], words, [tasks.EOS_ID]], axis=0)
    cut = tf.cond(tf.size(ids) > 0, lambda: cut, lambda: tf.zeros([0], tf.int32))
    padded = tf.pad(cut, [[0, max_words + 2 - tf.size(cut)]], constant_values=-1)
    return tf.ensure_shape(padded, [max_words + 2])


def _split_files(config: DataConfig, split: str):
    """The shards of a pipeline split: `train` and `val` read `config.train_split`, `test`
    `config.test_split` (each one shard prefix or a comma-separated list, e.g. three folds)."""
    if split in ("train", "val"):
        prefix = config.train_split
    elif split == "test":
        prefix = config.test_split
    else:
        raise ValueError(f"split={split!r}; expected 'train', 'val' or 'test'")
    if split == "val" and config.val_fraction <= 0:
        raise ValueError("split 'val' needs val_fraction > 0 (got "
                         f"val_fraction={config.val_fraction})")
    return shards.shard_files(config.data_dir, prefix)


def in_validation(sample_key: tf.Tensor, config: DataConfig) -> tf.Tensor:
    """Whether a training-split sample belongs to the validation carve-out: a seeded hash of
    its key, so the split is deterministic and independent of shard order."""
    bucket = tf.strings.to_hash_bucket_fast(
        tf.strings.join([str(config.val_seed), ":", sample_key]), _HASH_BUCKETS)
    return bucket < int(round(config.val_fraction * _HASH_BUCKETS))


def _records(config: DataConfig, split: str, training: bool,
             deterministic: Optional[bool] = None) -> tf.data.Dataset:
    files = _split_files(config, split)
    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        ds = ds.shuffle(len(files), seed=config.seed, reshuffle_each_iteration=True)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8),
                       num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=not training if deterministic is None else deterministic)
    if split in ("train", "val") and config.val_fraction > 0:
        want_val = split == "val"
        key_spec = {features.SAMPLE_KEY: tf.io.FixedLenFeature([], tf.string)}

        def keep(serialized):
            ctx, _ = tf.io.parse_single_sequence_example(serialized, context_features=key_spec)
            return tf.equal(in_validation(ctx[features.SAMPLE_KEY], config), want_val)

        ds = ds.filter(keep)
    actions = config.evaluated_test_actions if split == "test" else config.actions
    if actions:
        ds = ds.filter(_action_filter(actions))
    count = {"train": config.train_samples, "test": config.test_samples}.get(split, 0)
    if count:
        keys = tf.constant(chosen_keys(config, split, count))
        ds = ds.filter(lambda s: tf.reduce_any(tf.equal(_context(s, features.SAMPLE_KEY), keys)))
    return ds


def _context(serialized: tf.Tensor, key: str) -> tf.Tensor:
    spec = {key: features.CONTEXT_SPEC[key]}
    return tf.io.parse_single_sequence_example(serialized, context_features=spec)[0][key]


def _action_filter(actions):
    ids = tf.constant([tasks.AQA7_ACTIONS.index(a) + 1 for a in actions], tf.int64)
    return lambda serialized: tf.reduce_any(tf.equal(_context(serialized, features.ACTION_ID),
                                                     ids))


def chosen_keys(config: DataConfig, split: str, count: int):
    """The `count` sample keys of `split` (after the validation carve-out and the action
    filter) that `train_samples` / `test_samples` keep: a seeded choice (`val_seed`) among the
    keys in sorted order, so it is the same in every epoch and every process."""
    import numpy as np
    unlimited = dataclasses.replace(config, train_samples=0, test_samples=0)
    keys = sorted(k.decode("utf-8") for k in _records(unlimited, split, training=False).map(
        lambda s: _context(s, features.SAMPLE_KEY)).as_numpy_iterator())
    if count > len(keys):
        raise ConfigError(f"{split}_samples={count}, but the {split} split has only "
                          f"{len(keys)} samples (after the action filter)")
    chosen = np.random.default_rng(config.val_seed).choice(len(keys), count, replace=False)
    return [keys[i] for i in sorted(chosen)]


def build_dataset(config: DataConfig, split: str, training: bool, with_keys: bool = False,
                  include_caption: bool = False, repeat: bool = False,
                  drop_remainder: Optional[bool] = None, deterministic: Optional[bool] = None,
                  include_judges: bool = False,
                  num_judges: int = features.NUM_JUDGES,
                  exemplar_pairs: Optional[Tuple[str, bool]] = None,
                  include_steps: bool = False) -> tf.data.Dataset:
    """Batches of `(inputs, targets)` of one split.

    Args:
      config: the data configuration.
      split: 'train' (training split minus the validation carve-out), 'val' (the carve-out)
        or 'test'.
      training: random temporal jitter, flips and shuffling when True; deterministic otherwise.
      with_keys: add `inputs["sample_key"]`, `inputs["action_name"]` and
        `inputs["dive_number"]` (string `[batch]`; b"" for records without a name or dive
        number).
      include_caption: add `inputs["caption_tokens"]` (int32 `[batch, max_caption_words +
        1]`: `<sos> w1 .. wn`, padded with `<eos>`) and `targets["caption"]` (the next words
        `w1 .. wn <eos>`, padded with -1).
      repeat: repeat forever.
      drop_remainder: default True when training (static batch shape), False otherwise.
      deterministic: the order of the records and samples does not depend on thread timing;
        default: when not training. Training on several workers needs it: each worker reads
        the whole stream and keeps its part of every batch (`train_lib`).
      include_judges: add `targets["judge_scores"]` (float32 `[batch, num_judges]`; -1.0 for
        every judge of a sample without a panel of that size). `dive_number` is never an input.
      num_judges: the panel of `include_judges` (the musdl head's --musdl_judges; MTL-AQA 7).
      exemplar_pairs: `(match, use_difficulty)` of the core head: when training, every element
        is a pair of records of the same match value (`paired_records`), and
        adds `inputs["exemplar_video"]`, `inputs["exemplar_target"]`, `inputs["query_target"]`
        and `targets["relative_score"]` (query - exemplar; targets are scores, or executions
        with `use_difficulty`). Ignored when not training (evaluation compares each query with
        a bank of training exemplars, `heads.core.ExemplarBank`).
      include_steps: add `targets["step_transitions"]` (int32 `[batch, 2]`, the dive's two
        step transitions within the model's frames, `window_transitions`); with
        `exemplar_pairs` when training, also `inputs["query_transitions"]` (the same) and
        `inputs["exemplar_transitions"]`, and `targets["exemplar_transitions"]` (the
        procedure-aware heads: TSA).

    Returns:
      A dataset of `(inputs, targets)`: inputs `{"video": float32 [batch, num_clips,
      clip_length, crop, crop, 3], "difficulty": float32 [batch]}`; targets `{"score": float32
      [batch] (points, -1 if missing), "position", "armstand", "rotation_type", "somersaults",
      "twists": int32 [batch] (-1 if missing)}` (+ `"caption"`, `"judge_scores"`).
    """
    config.validate()
    if deterministic is None:
        deterministic = not training
    if training and exemplar_pairs:
        return _paired_dataset(config, split, exemplar_pairs, repeat, drop_remainder,
                               include_steps)
    ds = _records(config, split, training, deterministic)
    if training:
        ds = ds.shuffle(config.shuffle_buffer, seed=config.seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    # Per-sample augmentation seeds from a seeded random stream that is drawn anew each
    # iteration (epoch): stateless ops then keep augmentation deterministic given --seed and
    # independent of map parallelism, and different from one epoch to the next.
    seeds = tf.data.Dataset.random(seed=config.seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip(seeds, ds)

    # Not converted by autograph (no Python control flow on tensors here): converting the
    # pipeline's functions took about 2 s of every process's first dataset.
    @tf.autograph.experimental.do_not_convert
    def parse(seed, serialized):
        record = features.parse_sequence_example(serialized)
        return parse_sample(record, config, training, seed, include_caption, with_keys,
                            include_judges, num_judges, include_steps)

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if drop_remainder is None:
        drop_remainder = training
    ds = ds.batch(config.batch_size, drop_remainder=drop_remainder)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds if autotunes(config) else without_autotune(ds)


def _paired_dataset(config: DataConfig, split: str, exemplar_pairs: Tuple[str, bool],
                    repeat: bool, drop_remainder: Optional[bool],
                    include_steps: bool = False) -> tf.data.Dataset:
    """Training batches of (query, exemplar) pairs (see `build_dataset`'s `exemplar_pairs`).
    Deterministic: the same seed gives the same pairs and augmentations."""
    match, use_difficulty = exemplar_pairs
    ds = _records(config, split, True, deterministic=True)
    ds = ds.shuffle(config.shuffle_buffer, seed=config.seed, reshuffle_each_iteration=True)
    ds = paired_records(ds, match, config.seed)
    if repeat:
        ds = ds.repeat()
    seeds = tf.data.Dataset.random(seed=config.seed, rerandomize_each_iteration=True).batch(4)

    def target(record):
        score = tf.cast(record[features.FINAL_SCORE], tf.float32)
        return score / tf.cast(record[features.DIFFICULTY], tf.float32) if use_difficulty \
            else score

    @tf.autograph.experimental.do_not_convert
    def parse(seed, pair):
        query = features.parse_sequence_example(pair[0])
        exemplar = features.parse_sequence_example(pair[1])
        inputs, targets = parse_sample(query, config, True, seed[:2],
                                       include_steps=include_steps)
        exemplar_inputs, exemplar_targets = parse_sample(exemplar, config, True, seed[2:],
                                                         include_steps=include_steps)
        if include_steps:
            inputs["query_transitions"] = targets[tasks.STEP_TRANSITIONS]
            inputs["exemplar_transitions"] = targets["exemplar_transitions"] = \
                exemplar_targets[tasks.STEP_TRANSITIONS]
        inputs["exemplar_video"] = exemplar_inputs["video"]
        inputs["exemplar_target"] = target(exemplar)
        inputs["query_target"] = target(query)
        targets["relative_score"] = target(query) - target(exemplar)
        return inputs, targets

    ds = tf.data.Dataset.zip(seeds, ds).map(parse, num_parallel_calls=tf.data.AUTOTUNE,
                                            deterministic=True)
    ds = ds.batch(config.batch_size, drop_remainder=True if drop_remainder is None
                  else drop_remainder)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds if autotunes(config) else without_autotune(ds)


def match_value_tensor(record, match: str):
    """The match value of a parsed record (`features.parse_sequence_example`) as a tf string,
    in `data.exemplars.match_value`'s form."""
    if match == "dive_number":
        return tf.strings.upper(record[features.DIVE_NUMBER])
    if match == "difficulty":
        return tf.strings.as_string(record[features.DIFFICULTY], precision=2)
    if match == "action":
        return tf.strings.as_string(record[features.ACTION_ID])
    return tf.constant("")


def paired_records(serialized, match: str, seed: int):
    """Pairs a stream of serialized training records: consecutive records of the same match
    value (a `group_by_window` of two per value) become one element `[2]` (query, exemplar).

    Every record is in one pair per pass, so a pass gives about `n / 2` pairs, each trained in
    both directions (the authors' training step also regresses both ways). The stream should be
    shuffled with a buffer that holds the split, so that partners are drawn uniformly within
    the value, as the authors' `random.randint` does. A record left alone at the end of the
    pass (an odd count of its value) is paired with itself. `seed` salts the window keys."""
    spec = {features.DIVE_NUMBER: features.CONTEXT_SPEC[features.DIVE_NUMBER],
            features.DIFFICULTY: features.CONTEXT_SPEC[features.DIFFICULTY],
            features.ACTION_ID: features.CONTEXT_SPEC[features.ACTION_ID]}

    def key(record):
        context, _ = tf.io.parse_single_sequence_example(record, context_features=spec)
        value = match_value_tensor(context, match)
        return tf.strings.to_hash_bucket_fast(tf.strings.join([str(seed), ":", value]),
                                              2 ** 62)

    def pair(window):
        return window.batch(2)

    pairs = serialized.group_by_window(key, lambda _, window: pair(window), window_size=2)
    return pairs.map(lambda two: tf.stack([two[0], two[-1]]))


def without_autotune(ds: tf.data.Dataset) -> tf.data.Dataset:
    """`ds` with tf.data autotuning off: its AUTOTUNE parallelism runs at the core count and
    prefetch buffers adapt as before autotuning."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def autotunes(config: DataConfig) -> bool:
    """Whether tf.data autotuning is on for `config` (`--input_autotune`; 'auto': where the
    Keras backend sees a GPU)."""
    if config.input_autotune == "auto":
        return bool(devices.gpu_devices())
    return config.input_autotune == "on"


def serving_windows(config: DataConfig, split: str) -> tf.data.Dataset:
    """The windows of a split as a client sends them to an export: one element per record,
    `{"sample_key": string, "frames": string [<= window_length] (the stored JPEG frames of the
    window ending at the annotated end; fewer when the video is shorter: the export pads them
    as its `pad_mode` says), "difficulty": float32, "action": int32, "dive_number": string,
    "score": float32}`. For
    parity checks of exports (`aqa_tf.serving.tflite_lib`) and calibration data (int8
    quantisation)."""
    @tf.autograph.experimental.do_not_convert
    def window(serialized):
        record = features.parse_sequence_example(serialized)
        jpegs = record[features.FRAMES]
        num_stored = tf.cast(tf.shape(jpegs)[0], tf.int64)
        end = window_end(record[features.END_INDEX], num_stored, config, training=False)
        start = tf.maximum(end - config.window_length + 1, 0)
        return {"sample_key": record[features.SAMPLE_KEY], "frames": jpegs[start:end + 1],
                "difficulty": tf.cast(record[features.DIFFICULTY], tf.float32),
                "action": tf.cast(record[features.ACTION_ID], tf.int32),
                "dive_number": record[features.DIVE_NUMBER],
                "score": tf.cast(record[features.FINAL_SCORE], tf.float32)}

    return _records(config, split, training=False).map(window,
                                                       num_parallel_calls=tf.data.AUTOTUNE)


def check_stored_size(config: DataConfig, split: str = "train"):
    """Checks that the first record of `split` stores frames of `stored_height` x
    `stored_width` (what the export resizes videos to); a mismatch raises ConfigError."""
    spec = {features.HEIGHT: tf.io.FixedLenFeature([], tf.int64),
            features.WIDTH: tf.io.FixedLenFeature([], tf.int64)}
    for serialized in tf.data.TFRecordDataset(_split_files(config, split)[:1]).take(1):
        ctx, _ = tf.io.parse_single_sequence_example(serialized, context_features=spec)
        size = int(ctx[features.HEIGHT]), int(ctx[features.WIDTH])
        if size != (config.stored_height, config.stored_width):
            raise ConfigError(
                f"the records in {config.data_dir} store {size[0]}x{size[1]} (height x width) "
                f"frames, but --stored_height/--stored_width say {config.stored_height}x"
                f"{config.stored_width}: set them to the records' size (the export resizes "
                "videos to it)")


def num_examples(config: DataConfig, split: str) -> int:
    """Records of a split (after the validation carve-out), reading keys only."""
    return int(_records(config, split, training=False).reduce(0, lambda n, _: n + 1))


def preprocess_video_batch(video_uint8: tf.Tensor, config: DataConfig) -> tf.Tensor:
    """Serving-time preprocessing: uint8 `[batch, window_length, H, W, 3]` (the window, ending at
    the dive's end) -> float32 `[batch, num_clips, clip_length, crop, crop, 3]`, exactly as the
    evaluation pipeline does (center crop, normalisation, clip cutting)."""
    shape = tf.shape(video_uint8)
    batch, length = shape[0], shape[1]
    frames = tf.reshape(video_uint8, tf.concat([[batch * length], shape[2:]], axis=0))
    frames = _to_model_frames(frames, config)
    frames = tf.reshape(frames, [batch, length, config.crop_size, config.crop_size, 3])
    video = tf.gather(frames, clip_indices(config), axis=1)
    return tf.ensure_shape(video, [None, config.num_clips, config.clip_length, config.crop_size,
                                   config.crop_size, 3])
