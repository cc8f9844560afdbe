"""Shared helper of the dataset converters: the conversion report (sharded output is
`aqa_tf.data.shards.ShardedWriter`)."""

import dataclasses
import os
import json
from typing import Dict


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


def define_output_flags(width_help: str = "Stored frame width.",
                        height_help: str = "Stored frame height.", *, width: int = 171,
                        height: int = 128, splits: bool = True):
    """The output flags every converter shares: folder, stored frame size (default `width` x
    `height`), workers, JPEG quality and, with `splits`, the train/test shard counts and
    `--splits` (a converter whose splits are given otherwise, JIGSAWS's folds, leaves them
    out)."""
    from absl import flags
    flags.DEFINE_string("out_dir", None, "Output folder for the TFRecord shards (written as a "
                        "whole: refused when it holds files, unless --overwrite).")
    flags.DEFINE_bool("overwrite", False, "Replace the contents of a non-empty --out_dir once "
                      "the new conversion is complete.")
    flags.DEFINE_integer("width", width, width_help)
    flags.DEFINE_integer("height", height, height_help)
    flags.DEFINE_integer("num_workers", 0, "Worker processes (0: one per CPU).")
    flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of the stored frames.")
    if splits:
        flags.DEFINE_integer("num_shards_train", 8, "Shards of the training split.")
        flags.DEFINE_integer("num_shards_test", 4, "Shards of the test split.")
        flags.DEFINE_list("splits", ["train", "test"], "Splits to convert.")


def load_pickle(path: str, missing: str, name: str = ""):
    """The object pickled in `path` (a release's annotation or split file).

    Raises:
      FileNotFoundError: `path` does not exist; the message is `missing`.
      DataError: it cannot be unpickled (truncated, not a pickle, a folder); the message names
        `name` (the option or file as the user gave it; default `path`).
    """
    import pickle
    from aqa_tf.data.shards import DataError
    if not os.path.exists(path):
        raise FileNotFoundError(missing)
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, OSError) as error:
        raise DataError(f"{name or path}: not a readable pickle ({error})") from None
