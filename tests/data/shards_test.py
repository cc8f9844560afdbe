"""Shard files: naming, finding a split's shards, round-robin writing, and the check that names
truncated shards."""

import os

import pytest
import tensorflow as tf

from aqa_tf.data import shards
from tests.conftest import truncated_copy


@pytest.fixture
def records(tmp_path):
    folder = str(tmp_path / "records")
    with shards.ShardedWriter(folder, "train", 3) as writer:
        for i in range(7):
            writer.write(f"record {i}".encode() * 50)
    return folder


def test_writer_spreads_records_round_robin_and_finder_finds_them(records):
    files = shards.shard_files(records, "train")
    assert [os.path.basename(f) for f in files] == [
        shards.shard_name("train", i, 3) for i in range(3)] == [
        "train-00000-of-00003.tfrecord", "train-00001-of-00003.tfrecord",
        "train-00002-of-00003.tfrecord"]
    contents = [[r.numpy() for r in tf.data.TFRecordDataset(f)] for f in files]
    assert [len(c) for c in contents] == [3, 2, 2]
    assert contents[1][0] == b"record 1" * 50
    assert not [f for f in os.listdir(records) if f.endswith(".tmp")]
    with pytest.raises(FileNotFoundError, match="no TFRecord shards match .*/test-\\*-of-\\*"):
        shards.shard_files(records, "test")


def test_check_names_the_truncated_shard_only(records, tmp_path):
    assert shards.check_shards([records]) == []
    broken = truncated_copy(records, str(tmp_path / "broken"), "train-00001-of-00003.tfrecord",
                            keep=0.6)
    problems = shards.check_shards([shards.shard_pattern(broken, "train"),
                                    os.path.join(broken, "absent.tfrecord")])
    assert len(problems) == 2
    assert "train-00001-of-00003.tfrecord: truncated or corrupt after 1 records" in problems[0]
    assert problems[1].endswith("absent.tfrecord: file does not exist")
