r"""Counts, label histograms, frame shapes and a full validation pass over TFRecord shards.

  python -m tfrecords_tools.inspect data/mtl_aqa [--dump_frames sheet.png --sample_key 01_001]

Every record is parsed and every frame decoded; a truncated or corrupt shard, an undecodable
frame or a malformed record is reported with the file (and record / sample) and the pass goes
on with the rest. The exit status is non-zero if anything is wrong.
"""

import collections
import glob
import json
import os
import sys
from typing import Dict, List, Optional

import numpy as np

from aqa_tf.config import ConfigError
from aqa_tf.data import features
from aqa_tf.data import shards


def _split_of(path: str) -> str:
    return os.path.basename(path).split("-")[0]


def inspect_paths(paths: List[str], decode_frames: bool = True,
                  keep_sample: Optional[str] = None) -> Dict[str, object]:
    """Reads every record of `paths`. Returns stats and the list of problems found.

    With `keep_sample` (a sample key, or "" for the first record) the decoded frames of that
    sample are returned under `sample_frames`.
    """
    import tensorflow as tf
    files = shards.expand_paths(paths)
    problems, per_file = [], {}
    splits = collections.defaultdict(lambda: {
        "count": 0, "labels": {n: collections.Counter() for n in features.CLASS_LABELS},
        "final_score": [], "difficulty": [], "caption_length": [], "num_frames": [],
        "frame_shapes": collections.Counter(), "missing": collections.Counter(),
        "action_scores": collections.defaultdict(list), "with_judges": 0, "judge_scores": [],
        "with_dive_number": 0, "dive_numbers": collections.Counter(), "dive_scores": [],
        "step_labels": collections.Counter(), "with_steps": 0})
    sample_frames = None
    if not files:
        problems.append(f"no TFRecord files found in {paths}")
    for path in files:
        if not os.path.exists(path):
            problems.append(f"{path}: file does not exist")
            continue
        count = 0
        stats = splits[_split_of(path)]
        try:
            for serialized in tf.data.TFRecordDataset(path):
                where = f"{path}, record {count}"
                count += 1
                try:
                    record = features.parse_to_numpy(serialized.numpy())
                except Exception as error:  # A malformed record is reported, the pass goes on.
                    problems.append(f"{where}: cannot parse: {error}")
                    continue
                where += f" (sample {record['sample_key']})"
                stats["count"] += 1
                for name in features.CLASS_LABELS:
                    if record[name] == features.MISSING_INT:
                        stats["missing"][name] += 1
                    else:
                        stats["labels"][name][record[name]] += 1
                for name in features.FLOAT_LABELS:
                    value = record[name]
                    if value == features.MISSING_FLOAT:
                        stats["missing"][name] += 1
                    elif not np.isfinite(value):
                        problems.append(f"{where}: {name} is {value}")
                    else:
                        stats[name].append(value)
                if record["action_id"] != 0:  # multi-action datasets (AQA-7)
                    action = f"{record['action_id']} {record['action_name']}".strip()
                    stats["action_scores"][action].append(record["final_score"])
                _count_judges(stats, record)
                stats["caption_length"].append(len(record["caption"]))
                stats["num_frames"].append(record["num_frames"])
                if record["num_frames"] != len(record["frames"]):
                    problems.append(f"{where}: num_frames={record['num_frames']} but "
                                    f"{len(record['frames'])} frames stored")
                if decode_frames:
                    decoded = []
                    for i, data in enumerate(record["frames"]):
                        try:
                            frame = features.decode_jpeg(data)
                        except ValueError:
                            problems.append(f"{where}: frame {i} is not a decodable JPEG")
                            continue
                        stats["frame_shapes"][str(frame.shape)] += 1
                        if frame.shape[:2] != (record["height"], record["width"]):
                            problems.append(f"{where}: frame {i} is {frame.shape[:2]}, the "
                                            f"record says {record['height']}x{record['width']}")
                        decoded.append(frame)
                    if keep_sample is not None and sample_frames is None and (
                            keep_sample in ("", record["sample_key"])):
                        sample_frames = (record["sample_key"], decoded)
        except tf.errors.OpError as error:
            problems.append(shards.read_error(path, count, error))
        per_file[path] = count
    summary = {}
    for split, stats in splits.items():
        s = {"count": stats["count"],
             "labels": {n: dict(sorted(c.items())) for n, c in stats["labels"].items()},
             "missing": dict(stats["missing"]), "frame_shapes": dict(stats["frame_shapes"])}
        for name in ("final_score", "difficulty", "caption_length", "num_frames"):
            values = np.array(stats[name], np.float64)
            s[name] = ({"min": float(values.min()), "max": float(values.max()),
                        "mean": float(values.mean())} if len(values) else None)
        # Per action: scores of different actions live on different scales (AQA-7).
        s["actions"] = {a: {"count": len(v), "min": float(min(v)), "max": float(max(v)),
                            "mean": float(np.mean(v))}
                        for a, v in sorted(stats["action_scores"].items(),
                                           key=lambda item: int(item[0].split()[0]))}
        s["judges"] = _judges_summary(stats)
        s["dives"] = _dives_summary(stats)
        summary[split] = s
    return {"files": per_file, "splits": summary, "problems": problems,
            "sample_frames": sample_frames}


def _count_judges(stats: dict, record: dict):
    """Adds a record's judges' scores and dive number (when it has them) to its split's stats."""
    if record[features.JUDGE_SCORES]:
        stats["with_judges"] += 1
        stats["judge_scores"].extend(record[features.JUDGE_SCORES])
    stats["with_dive_number"] += bool(record[features.DIVE_NUMBER])
    if record[features.DIVE_NUMBER]:
        stats["dive_numbers"][record[features.DIVE_NUMBER]] += 1
        if record[features.FINAL_SCORE] != features.MISSING_FLOAT:
            stats["dive_scores"].append(record[features.FINAL_SCORE])
    if record[features.STEP_LABEL_IDS]:
        stats["with_steps"] += 1
        stats["step_labels"].update(f"{i} {name}" for i, name in zip(
            record[features.STEP_LABEL_IDS], record[features.STEP_LABEL_NAMES]))


def _judges_summary(stats: dict) -> Dict[str, object]:
    """Samples with judges' scores (and with dive numbers) and the range of the scores."""
    values = np.array(stats["judge_scores"], np.float64)
    return {"samples_with_judges": stats["with_judges"],
            "samples_with_dive_number": stats["with_dive_number"],
            "judge_scores": ({"min": float(values.min()), "max": float(values.max()),
                              "mean": float(values.mean())} if len(values) else None)}


def _dives_summary(stats: dict, most_common: int = 5) -> Dict[str, object]:
    """Over the records with dive numbers: their scores, how many dive types and the most
    common ones; over those with step labels: every step label seen (`<id> <name>` -> samples
    that have it)."""
    scores = np.array(stats["dive_scores"], np.float64)
    return {"samples_with_dive_number": stats["with_dive_number"],
            "dive_types": len(stats["dive_numbers"]),
            "most_common_dive_types": stats["dive_numbers"].most_common(most_common),
            "final_score": ({"min": float(scores.min()), "max": float(scores.max()),
                             "mean": float(scores.mean())} if len(scores) else None),
            "samples_with_steps": stats["with_steps"],
            "step_labels": dict(sorted(stats["step_labels"].items(),
                                       key=lambda item: int(item[0].split()[0])))}


def contact_sheet(frames: List[np.ndarray], columns: int = 8) -> np.ndarray:
    """A grid of the frames, each labelled with its index."""
    import cv2
    h, w = frames[0].shape[:2]
    rows = (len(frames) + columns - 1) // columns
    sheet = np.full((rows * (h + 2), columns * (w + 2), 3), 255, np.uint8)
    for i, frame in enumerate(frames):
        tile = frame.copy()
        cv2.putText(tile, str(i), (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1)
        r, c = divmod(i, columns)
        sheet[r * (h + 2):r * (h + 2) + h, c * (w + 2):c * (w + 2) + w] = tile
    return sheet


def main(argv):
    from absl import flags
    f = flags.FLAGS
    paths = argv[1:]
    if not paths:
        print("usage: python -m tfrecords_tools.inspect PATH... [--dump_frames OUT.png]")
        return 2
    for path in paths:  # a typo is a user's mistake; problems found in files are reported
        if not glob.has_magic(path) and not os.path.exists(path):
            raise ConfigError(f"{path}: no such file or folder")
    result = inspect_paths(paths, keep_sample=(f.sample_key or "") if f.dump_frames else None)
    for path, count in result["files"].items():
        print(f"{path}: {count} records")
    for split, s in result["splits"].items():
        print(f"\n[{split}] {s['count']} samples; frame shapes {s['frame_shapes']}")
        for name in ("final_score", "difficulty", "caption_length", "num_frames"):
            if s[name]:
                print(f"  {name:<15} min {s[name]['min']:.2f}  mean {s[name]['mean']:.2f}  "
                      f"max {s[name]['max']:.2f}")
        for action, a in s["actions"].items():
            print(f"  action {action:<20} {a['count']:>4} samples, final_score min "
                  f"{a['min']:.2f}  mean {a['mean']:.2f}  max {a['max']:.2f}")
        for name, hist in s["labels"].items():
            print(f"  {name:<15} {hist}")
        if s["missing"]:
            print(f"  missing labels  {s['missing']}")
        judges = s["judges"]
        if judges["judge_scores"]:
            j = judges["judge_scores"]
            print(f"  judge_scores    {judges['samples_with_judges']} samples with judges: min "
                  f"{j['min']:.2f}  mean {j['mean']:.2f}  max {j['max']:.2f}; "
                  f"{judges['samples_with_dive_number']} with dive numbers")
        dives = s["dives"]
        if dives["dive_types"]:
            common = ", ".join(f"{code} ({n})" for code, n in dives["most_common_dive_types"])
            score = dives["final_score"]
            print(f"  dive types      {dives['dive_types']} in {dives['samples_with_dive_number']}"
                  f" samples; most common: {common}")
            if score:
                print(f"                  their final_score min {score['min']:.2f}  mean "
                      f"{score['mean']:.2f}  max {score['max']:.2f}")
        if dives["step_labels"]:
            print(f"  step labels     {len(dives['step_labels'])} seen in "
                  f"{dives['samples_with_steps']} samples: "
                  + ", ".join(dives["step_labels"]))
    if f.dump_frames:
        if result["sample_frames"] is None:
            result["problems"].append(f"sample {f.sample_key!r} not found for --dump_frames")
        else:
            import cv2
            key, frames = result["sample_frames"]
            cv2.imwrite(f.dump_frames, contact_sheet(frames)[..., ::-1])
            print(f"\nContact sheet of sample {key} ({len(frames)} frames): {f.dump_frames}")
    if f.json:
        with open(f.json, "w") as out:
            json.dump({k: v for k, v in result.items() if k != "sample_frames"}, out, indent=2)
    if result["problems"]:
        print(f"\n{len(result['problems'])} PROBLEMS:", file=sys.stderr)
        for problem in result["problems"]:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print("\nValidation: every record parsed and every frame decoded.")
    return 0


if __name__ == "__main__":
    from absl import flags
    from aqa_tf import flag_defs
    flags.DEFINE_string("dump_frames", "", "Write a contact sheet PNG of one sample here.")
    flags.DEFINE_string("sample_key", "", "Sample for --dump_frames (default: the first).")
    flags.DEFINE_string("json", "", "Also write the statistics and problems as JSON here.")
    flag_defs.run(main)
