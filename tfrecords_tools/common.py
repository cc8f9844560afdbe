"""Shared helper of the dataset converters: the conversion report (sharded output is
`aqa_tf.data.shards.ShardedWriter`)."""

import dataclasses
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
