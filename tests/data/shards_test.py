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


def test_a_split_may_name_several_shard_prefixes(tmp_path):
    """Cross-validation folds: `fold1,fold2,fold3` reads the three folds' shards, in the order
    given; a prefix never matches a longer one (fold1 is not fold10); a missing fold is named."""
    folder = str(tmp_path / "folds")
    for prefix, shards_count in (("fold0", 1), ("fold1", 2), ("fold2", 1), ("fold3", 1),
                                 ("fold10", 1)):
        with shards.ShardedWriter(folder, prefix, shards_count) as writer:
            for i in range(shards_count):
                writer.write(f"{prefix} record {i}".encode())
    files = shards.shard_files(folder, "fold3, fold1,fold2")
    assert [os.path.basename(f) for f in files] == [
        "fold3-00000-of-00001.tfrecord", "fold1-00000-of-00002.tfrecord",
        "fold1-00001-of-00002.tfrecord", "fold2-00000-of-00001.tfrecord"]
    assert shards.shard_files(folder, "fold1") == files[1:3]
    assert shards.shard_patterns(folder, "fold1,fold2") == [
        f"{folder}/fold1-*-of-*.tfrecord", f"{folder}/fold2-*-of-*.tfrecord"]
    assert shards.split_prefixes("train") == ["train"]
    with pytest.raises(FileNotFoundError, match="no TFRecord shards match .*/fold4-\\*-of-\\*"):
        shards.shard_files(folder, "fold1,fold4")
    for bad, message in (("fold1,,fold2", "empty"), ("fold1,fold1", "fold1 given more than once"),
                         ("fold*", "path/glob")):
        with pytest.raises(ValueError, match=message):
            shards.split_prefixes(bad)
    with pytest.raises(ValueError, match="one prefix only"):
        shards.shard_pattern(folder, "fold1,fold2")
    # The data config refuses a test fold that is also trained on, and a bad list.
    from aqa_tf.config import ConfigError, DataConfig
    DataConfig(train_split="fold1,fold2,fold3", test_split="fold0").validate()
    with pytest.raises(ConfigError, match="both read fold0"):
        DataConfig(train_split="fold0,fold1", test_split="fold0").validate()
    with pytest.raises(ConfigError, match="test_split=fold2,fold2: .*more than once"):
        DataConfig(train_split="fold1", test_split="fold2,fold2").validate()
