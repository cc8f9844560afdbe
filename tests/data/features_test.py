"""The record schema (`aqa_tf.data.features`): optional keys are left out of a record and read
back as missing, both by the eager reader and by the tf.data parser; version 1 records (every
key written) still read."""

import numpy as np
import pytest
import tensorflow as tf

from aqa_tf.data import features


def _frames(count=3):
    return [features.encode_jpeg(np.full((8, 10, 3), 40 * i, np.uint8)) for i in range(count)]


def _graph_parse(serialized: bytes):
    parsed = features.parse_sequence_example(tf.constant(serialized))
    return {k: v.numpy() for k, v in parsed.items()}


def test_score_only_sample_writes_no_sub_action_keys_and_reads_them_as_missing():
    sample = features.Sample("diving_001", _frames(), 8, 10, final_score=71.5, action_id=1,
                             action_name="diving", end_index=2)
    example = features.make_sequence_example(sample)
    written = set(example.context.feature)
    assert not written & set(features.CLASS_LABELS) and features.DIFFICULTY not in written
    serialized = example.SerializeToString()
    for record in (features.parse_to_numpy(serialized), _graph_parse(serialized)):
        assert record[features.POSITION] == features.MISSING_INT
        assert record[features.TW_NO] == features.MISSING_INT
        assert record[features.DIFFICULTY] == features.MISSING_FLOAT
        assert record[features.ACTION_ID] == 1
        assert record[features.FINAL_SCORE] == 71.5
    assert features.parse_to_numpy(serialized)[features.ACTION_NAME] == "diving"
    assert _graph_parse(serialized)[features.ACTION_NAME] == b"diving"


def test_version_1_record_with_every_key_still_reads():
    sample = features.Sample("01_001", _frames(), 8, 10, final_score=80.0, difficulty=3.0,
                             position=1, armstand=0, rotation_type=2, ss_no=3, tw_no=0,
                             end_index=1)
    example = features.make_sequence_example(sample)
    example.context.feature[features.SCHEMA_VERSION_KEY].int64_list.value[0] = 1
    serialized = example.SerializeToString()
    record = features.parse_to_numpy(serialized)
    assert record[features.SCHEMA_VERSION_KEY] == 1 and record[features.ACTION_NAME] == ""
    assert (record[features.POSITION], record[features.ROTATION_TYPE], record[features.SS_NO],
            record[features.DIFFICULTY]) == (1, 2, 3, 3.0)
    assert _graph_parse(serialized)[features.ROTATION_TYPE] == 2


def test_step_keys_round_trip_and_older_records_read_them_as_empty():
    labels = [2] * 5 + [15] * 4 + [36] * 3
    sample = features.Sample(
        "FINADivingWorldCup2021_Men3m_final_r1_8", _frames(4), 8, 10, final_score=66.0,
        difficulty=3.0, end_index=3, judge_scores=[7.5, 7.5, 7.0], dive_number="205b",
        frame_step_labels=labels, step_transitions=[5, 9], step_label_ids=[2, 15, 36],
        step_label_names=["Back", "2.5 Soms.Pike", "Entry"], frame_positions=[0, 3, 7, 11])
    serialized = features.serialize_sample(sample)
    record, graph = features.parse_to_numpy(serialized), _graph_parse(serialized)
    for name, value in [(features.FRAME_STEP_LABELS, labels),
                        (features.STEP_TRANSITIONS, [5, 9]),
                        (features.STEP_LABEL_IDS, [2, 15, 36]),
                        (features.FRAME_POSITIONS, [0, 3, 7, 11])]:
        assert record[name] == value
        assert graph[name].dtype == np.int64 and graph[name].tolist() == value
    assert record[features.STEP_LABEL_NAMES] == ["Back", "2.5 Soms.Pike", "Entry"]
    assert graph[features.STEP_LABEL_NAMES].tolist() == [b"Back", b"2.5 Soms.Pike", b"Entry"]
    assert record[features.DIVE_NUMBER] == "205b" and record[features.DIFFICULTY] == 3.0
    # Per stored frame: its step label.
    assert np.asarray(labels)[record[features.FRAME_POSITIONS]].tolist() == [2, 2, 15, 36]
    # A record without them (every writer before FineDiving) writes none and reads them empty.
    older = features.make_sequence_example(features.Sample("01_001", _frames(), 8, 10,
                                                           final_score=80.0, end_index=2))
    assert not set(older.context.feature) & set(features.STEP_KEYS)
    record, graph = (features.parse_to_numpy(older.SerializeToString()),
                     _graph_parse(older.SerializeToString()))
    for name in features.STEP_KEYS:
        assert record[name] == [] and graph[name].shape == (0,), name
    assert graph[features.STEP_LABEL_NAMES].dtype == object
    assert graph[features.FRAME_STEP_LABELS].dtype == np.int64


def test_frame_positions_are_checked_against_the_frames_and_the_labels():
    def sample(**fields):
        return features.Sample("x_1", _frames(3), 8, 10, **fields)

    with pytest.raises(ValueError, match="2 frame_positions for 3 frames"):
        features.make_sequence_example(sample(frame_positions=[0, 1]))
    with pytest.raises(ValueError, match=r"frame_positions \[5\] outside \[0, 5\)"):
        features.make_sequence_example(sample(frame_positions=[0, 2, 5],
                                              frame_step_labels=[1] * 5))
    with pytest.raises(ValueError, match="frame_positions"):
        features.make_sequence_example(sample(frame_positions=[-1, 0, 1]))
    with pytest.raises(ValueError, match="2 step_label_ids but 1 step_label_names"):
        features.make_sequence_example(sample(step_label_ids=[1, 2], step_label_names=["a"]))
    features.make_sequence_example(sample(frame_positions=[0, 0, 4], frame_step_labels=[1] * 5))
