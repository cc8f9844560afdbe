"""The record schema (`aqa_tf.data.features`): optional keys are left out of a record and read
back as missing, both by the eager reader and by the tf.data parser; version 1 records (every
key written) still read."""

import numpy as np
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
