"""Shared helpers of the dataset writers: sharded TFRecord output and a conversion report."""

import dataclasses
import json
import os
from typing import Dict, List

import tensorflow as tf

from aqa_tf.data import features


class ShardedWriter:
    """Writes serialized records of one split round-robin into `num_shards` shards.

    Files are first written as `<name>.tmp` and renamed on `close()`, so an interrupted
    conversion never leaves a shard that looks complete.
    """

    def __init__(self, out_dir: str, split: str, num_shards: int):
        if num_shards <= 0:
            raise ValueError(f"num_shards={num_shards} must be positive")
        os.makedirs(out_dir, exist_ok=True)
        self.paths = [os.path.join(out_dir, features.shard_name(split, i, num_shards))
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

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            for writer in self._writers:
                writer.close()


@dataclasses.dataclass
class ConversionReport:
    """What a conversion wrote and what it skipped (sample key -> reason)."""

    written: Dict[str, int] = dataclasses.field(default_factory=dict)
    skipped: Dict[str, str] = dataclasses.field(default_factory=dict)
    notes: Dict[str, object] = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"  {split}: {n} samples written" for split, n in sorted(self.written.items())]
        if self.skipped:
            lines.append(f"  {len(self.skipped)} samples SKIPPED:")
            lines += [f"    {key}: {reason}" for key, reason in sorted(self.skipped.items())]
        return "\n".join(["Conversion summary:"] + lines)

    def save(self, path: str):
        with open(path, "w") as f:
            json.dump(dataclasses.asdict(self), f, indent=2, sort_keys=True)
