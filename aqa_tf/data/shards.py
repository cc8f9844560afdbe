"""TFRecord shard files: names, finding a split's shards, writing them, checking them.

A split is stored as `<data_dir>/<split>-00000-of-00004.tfrecord`, ... (written round-robin by
`ShardedWriter`). The training library, the input pipeline and the dataset tools
(`tfrecords_tools`) all find and check shards here. TensorFlow is imported where a function
reads or writes records, so that the names and globs serve a process without it (the benchmark
under Keras's JAX backend on a machine with no TensorFlow).
"""

from __future__ import annotations

import glob
import os
from typing import TYPE_CHECKING, List, Sequence

if TYPE_CHECKING:  # annotations only: TensorFlow is imported where it is used
    import tensorflow as tf


class DataError(RuntimeError):
    """Records cannot be read; the message names the files and what is wrong with them."""


def shard_name(split: str, index: int, num_shards: int) -> str:
    """File name of one shard: `<split>-00000-of-00004.tfrecord`."""
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def shard_pattern(data_dir: str, split: str) -> str:
    """Glob of every shard of `split` under `data_dir`."""
    return f"{data_dir.rstrip('/')}/{split}-*-of-*.tfrecord"


def shard_files(data_dir: str, split: str) -> List[str]:
    """The shards of `split` under `data_dir`, sorted.

    Raises:
      FileNotFoundError: naming the pattern, if there are none.
    """
    import tensorflow as tf
    pattern = shard_pattern(data_dir, split)
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no TFRecord shards match {pattern}")
    return files


def expand_paths(paths: Sequence[str]) -> List[str]:
    """Folders (their `*.tfrecord` files), glob patterns and plain paths -> file paths."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            files += sorted(glob.glob(os.path.join(path, "*.tfrecord")))
        elif any(c in path for c in "*?["):
            files += sorted(glob.glob(path))
        else:
            files.append(path)
    return files


def read_error(path: str, records_read: int, error: tf.errors.OpError) -> str:
    """The problem report of a shard whose reading failed after `records_read` records."""
    return (f"{path}: truncated or corrupt after {records_read} records: "
            f"{error.message.splitlines()[0]}")


def check_shards(paths: Sequence[str]) -> List[str]:
    """Reads every record of every file (without parsing); returns one line per file that is
    missing, truncated or corrupt."""
    import tensorflow as tf
    problems = []
    for path in expand_paths(paths):
        if not os.path.exists(path):
            problems.append(f"{path}: file does not exist")
            continue
        count = 0
        try:
            for _ in tf.data.TFRecordDataset(path):
                count += 1
        except tf.errors.OpError as error:
            problems.append(read_error(path, count, error))
    return problems


class ShardedWriter:
    """Writes serialized records of one split round-robin into `num_shards` shards.

    Files are first written as `<name>.tmp` and renamed on `close()`, so an interrupted
    conversion never leaves a shard that looks complete.
    """

    def __init__(self, out_dir: str, split: str, num_shards: int):
        if num_shards <= 0:
            raise ValueError(f"num_shards={num_shards} must be positive")
        import tensorflow as tf
        os.makedirs(out_dir, exist_ok=True)
        self.paths = [os.path.join(out_dir, shard_name(split, i, num_shards))
                      for i in range(num_shards)]
        self._writers = [tf.io.TFRecordWriter(p + ".tmp") for p in self.paths]
        self._next = 0
        self.count = 0

    def write(self, serialized: bytes):
        self._writers[self._next].write(serialized)
        self._next = (self._next + 1) % len(self._writers)
        self.count += 1

    def close(self):
        for writer, path in zip(self._writers, self.paths):
            writer.close()
            os.replace(path + ".tmp", path)

    def __enter__(self) -> "ShardedWriter":
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            for writer in self._writers:
                writer.close()
