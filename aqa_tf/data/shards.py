"""TFRecord shard files: names, finding a split's shards, writing them, checking them.

A split is stored as `<data_dir>/<split>-00000-of-00004.tfrecord`, ... (written round-robin by
`ShardedWriter`); the split options name one such prefix or a comma-separated list of them
(cross-validation folds: `--train_split=fold1,fold2,fold3 --test_split=fold0`). The training
library, the input pipeline and the dataset tools (`tfrecords_tools`) all find and check shards
here. TensorFlow is imported where a function
reads or writes records, so that the names and globs serve a process without it (the benchmark
under Keras's JAX backend on a machine with no TensorFlow).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
from typing import TYPE_CHECKING, Iterator, List, Sequence

if TYPE_CHECKING:  # annotations only: TensorFlow is imported where it is used
    import tensorflow as tf


class DataError(RuntimeError):
    """Records cannot be read; the message names the files and what is wrong with them."""


def shard_name(split: str, index: int, num_shards: int) -> str:
    """File name of one shard: `<split>-00000-of-00004.tfrecord`."""
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def split_prefixes(split: str) -> List[str]:
    """The shard prefixes a split option names: `train` -> ["train"]; a comma-separated list
    reads several, e.g. cross-validation folds `fold1,fold2,fold3` -> ["fold1", "fold2",
    "fold3"] (spaces around the commas are ignored).

    Raises:
      ValueError: an empty prefix, a repeated one, or one holding a path or glob character.
    """
    prefixes = [p.strip() for p in str(split).split(",")]
    bad = [p for p in prefixes if not p or any(c in p for c in "/\\*?[]")]
    if bad:
        raise ValueError(f"split {split!r}: expected shard prefixes separated by commas (e.g. "
                         "train, or fold1,fold2,fold3); empty or path/glob characters in "
                         f"{bad}")
    repeated = sorted({p for p in prefixes if prefixes.count(p) > 1})
    if repeated:
        raise ValueError(f"split {split!r}: {', '.join(repeated)} given more than once")
    return prefixes


def shard_pattern(data_dir: str, prefix: str) -> str:
    """Glob of every shard of one shard prefix under `data_dir` (`shard_patterns` takes a
    comma-separated list).

    Raises:
      ValueError: `prefix` is a list (holds a comma).
    """
    if "," in prefix:
        raise ValueError(f"shard_pattern({prefix!r}): one prefix only; shard_patterns takes "
                         "a comma-separated list")
    return f"{data_dir.rstrip('/')}/{prefix}-*-of-*.tfrecord"


def shard_patterns(data_dir: str, split: str) -> List[str]:
    """One glob per shard prefix of `split` (`split_prefixes`: one prefix or a comma-separated
    list), in the order given."""
    return [shard_pattern(data_dir, prefix) for prefix in split_prefixes(split)]


def shard_files(data_dir: str, split: str) -> List[str]:
    """The shards of `split` under `data_dir`: one shard prefix, or a comma-separated list of
    them (`fold1,fold2,fold3`: the shards of the three folds); each prefix's shards sorted, the
    prefixes in the order given.

    Raises:
      FileNotFoundError: naming the pattern, if a prefix has no shards (a list where one fold
        is missing is refused, not read short).
      ValueError: `split` is not a valid list of prefixes (`split_prefixes`).
    """
    files = []
    for pattern in shard_patterns(data_dir, split):
        if "://" in pattern:  # gs://, s3://, ...: TensorFlow's file systems
            import tensorflow as tf
            found = sorted(tf.io.gfile.glob(pattern))
        else:  # a local path: no TensorFlow needed (a command refuses a missing dataset fast)
            found = sorted(glob.glob(pattern))
        if not found:
            raise FileNotFoundError(f"no TFRecord shards match {pattern}")
        files += found
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


def check_out_dir(out_dir: str, overwrite: bool = False, flag: str = "--out_dir"):
    """Refuses an `out_dir` that `fresh_folder` would refuse (converters check it before they
    read their annotations, so that the mistake is named first).

    Raises:
      DataError: `out_dir` is a file, or is not empty (without `overwrite`).
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DataError(f"{flag}={out_dir} is a file, not a folder")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise DataError(f"{flag}={out_dir} is not empty: give --overwrite to replace it, or "
                        "another folder")


@contextlib.contextmanager
def fresh_folder(out_dir: str, overwrite: bool = False, flag: str = "--out_dir") -> Iterator[str]:
    """A dataset folder written as a whole: yields a staging folder beside `out_dir`, which
    replaces `out_dir` only when the block ends without an error (a failed or killed
    conversion leaves `out_dir` as it was). An `out_dir` that already holds files is refused
    unless `overwrite`, so that old shards never mix with new ones.

    Raises:
      DataError: `out_dir` is a file, is not empty (without `overwrite`), or cannot be made.
    """
    out_dir = os.path.normpath(out_dir)
    check_out_dir(out_dir, overwrite, flag)
    staging = f"{out_dir}.partial-{os.getpid()}"
    try:
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
    except OSError as error:
        raise DataError(f"{flag}={out_dir}: cannot write there ({error.strerror})") from None
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = f"{staging}.old"
    if os.path.exists(out_dir):
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    shutil.rmtree(old, ignore_errors=True)


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
        self.out_dir, self.split = out_dir, split
        self._tmp = [os.path.join(out_dir, shard_name(split, i, num_shards)) + ".tmp"
                     for i in range(num_shards)]
        self._writers = [tf.io.TFRecordWriter(p) for p in self._tmp]
        self._counts = [0] * num_shards
        self._next = 0
        self.count = 0
        self.paths: List[str] = []

    def write(self, serialized: bytes):
        self._writers[self._next].write(serialized)
        self._counts[self._next] += 1
        self._next = (self._next + 1) % len(self._writers)
        self.count += 1

    def close(self):
        """Renames the shards that received records into place, numbered among themselves
        (fewer records than shards, e.g. after skipped samples, leaves no empty shard);
        `paths` lists them."""
        for writer in self._writers:
            writer.close()
        kept = [tmp for tmp, n in zip(self._tmp, self._counts) if n]
        self.paths = [os.path.join(self.out_dir, shard_name(self.split, i, len(kept)))
                      for i in range(len(kept))]
        for tmp, path in zip(kept, self.paths):
            os.replace(tmp, path)
        for tmp, n in zip(self._tmp, self._counts):
            if not n:
                os.remove(tmp)

    def __enter__(self) -> "ShardedWriter":
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            for writer in self._writers:
                writer.close()
