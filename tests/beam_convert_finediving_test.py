"""The FineDiving converter as an Apache Beam pipeline (`tfrecords_tools.beam_pipeline`): on a
synthetic FineDiving frames tree and synthetic annotation pickles (5 dives, one of them missing
a frame file), the DirectRunner (2 worker processes) writes the records that the process pool
(`--runner=local`) writes, every field of every record equal, in the same split; reports the bad
dive by key with the same reason and the same notes (dive types, short dives, renumbered frame
files), and leaves shards named and numbered as `aqa_tf.data.shards` reads them. Apache Beam is
optional (requirements-beam.txt): without it the Beam test skips, and asking for a Beam runner
is refused naming the install command."""

import glob
import json
import os
import pickle
import re

import numpy as np
import pytest

from aqa_tf import beam_lib
from aqa_tf.config import ConfigError
from aqa_tf.data import features
from tests.helpers import assert_same_records, run_cli
from tests.tfrecords_tools.finediving_test import _write_dive
from tfrecords_tools import finediving

NUM_FRAMES, W, H = 8, 24, 40  # stored per dive (the synthetic frames are 48x32)
TABLE = {1: "Forward", 2: "Back", 9: "2.5 Soms.Pike", 28: "Entry", 35: "1 Twist"}
VIDEO = "FINADivingWorldCup2021_Men3m_final_r1"
# key -> (split, frame files, first file number, coarse start_frame, dive type, judges, steps)
DIVES = {
    (VIDEO, 1): ("train", 10, 100, 100, "107B", 7, (1, 9, 28)),
    (VIDEO, 2): ("train", 6, 300, 300, "207C", 3, (2, 9, 28)),  # shorter than NUM_FRAMES
    (VIDEO, 3): ("train", 9, 500, 500, "107B", 7, (1, 9, 28)),  # BAD: a frame file removed
    ("01", 4): ("test", 12, 1, 40, "5132D", 5, (1, 35, 28)),    # files renumbered from 1
    ("01", 5): ("test", 8, 60, 60, "207C", 7, (2, 9, 28)),
}
BAD = finediving.sample_key((VIDEO, 3))
OPTIONS = dict(num_frames=NUM_FRAMES, width=W, height=H, num_shards_train=2, num_shards_test=2,
               progress=False)


def _annotations(count, start, dive_type, judges, steps, index):
    """The coarse and fine-grained entries of one synthetic dive of `count` frames, its steps
    spread over them."""
    labels = np.repeat(np.asarray(steps, np.int64),
                       np.diff(np.linspace(0, count, len(steps) + 1).astype(int)))
    score = 20.0 + index
    coarse = {"action_type": dive_type, "start_frame": start, "end_frame": start + count - 1,
              "dive_score": score, "difficulty": 2.0 + index / 10,
              "judge_scores": np.linspace(6.0, 8.0, judges)}
    fine = {"action_type": dive_type, "dive_score": score, "difficulty": coarse["difficulty"],
            "steps_transit_frames": np.flatnonzero(np.diff(labels)) + 1,
            "frames_labels": labels, "sub-action_types": {s: TABLE[s] for s in steps}}
    return coarse, fine


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(frames_dir, annotations_dir) of the synthetic dives, `BAD` missing its last file."""
    root = tmp_path_factory.mktemp("finediving")
    frames_dir, annotations_dir = str(root / "frames"), root / "Annotations"
    annotations_dir.mkdir()
    files = {finediving.COARSE_FILE: {}, finediving.FINE_FILE: {}, finediving.TABLE_FILE: TABLE,
             **{name: [] for name in finediving.SPLIT_FILES.values()}}
    for index, (key, (split, count, first, start, dive_type, judges, steps)) in enumerate(
            DIVES.items()):
        coarse, fine = _annotations(count, start, dive_type, judges, steps, index)
        files[finediving.COARSE_FILE][key], files[finediving.FINE_FILE][key] = coarse, fine
        files[finediving.SPLIT_FILES[split]].append(key)
        folder = _write_dive(frames_dir, key, count, first)
        if finediving.sample_key(key) == BAD:
            os.remove(sorted(glob.glob(os.path.join(folder, "*.jpg")))[-1])
    for name, value in files.items():
        with open(annotations_dir / name, "wb") as f:
            pickle.dump(value, f)
    return frames_dir, str(annotations_dir)


def test_the_beam_command_writes_the_records_of_the_process_pool(release, tmp_path):
    """`python -m tfrecords_tools.finediving --runner=DirectRunner` (2 worker processes): the
    bad dive's SKIPPED line and exit status 1, the report and notes of `--runner=local` (in this
    process), and its records, every field equal. One Beam run."""
    pytest.importorskip("apache_beam")
    frames_dir, annotations_dir = release
    local = finediving.convert(frames_dir, annotations_dir, str(tmp_path / "local"),
                               runner="local", num_workers=1, **OPTIONS)
    assert local.written == {"train": 2, "test": 2} and list(local.skipped) == [BAD]
    assert local.skipped[BAD] == (f"8 frames (00500..00507.jpg) but {finediving.FINE_FILE} "
                                  "gives 9 frames_labels")
    assert local.notes["shorter_than_num_frames"] == 1
    assert list(local.notes["frame_numbers_differ_from_annotation"]) == ["01_4"]
    assert local.notes["dive_types"] == 3

    out = str(tmp_path / "beam")
    proc = run_cli("tfrecords_tools.finediving", f"--frames_dir={frames_dir}",
                   f"--annotations_dir={annotations_dir}", f"--out_dir={out}",
                   f"--num_frames={NUM_FRAMES}", f"--width={W}", f"--height={H}",
                   "--num_shards_train=2", "--num_shards_test=2", "--num_workers=2",
                   "--runner=DirectRunner", expect=1)
    assert f"SKIPPED {BAD}: {local.skipped[BAD]}" in proc.stderr
    assert "1 samples SKIPPED" in proc.stdout and f"    {BAD}: " in proc.stdout
    assert "train: 2 samples written" in proc.stdout and "test: 2 samples written" in proc.stdout
    assert "Dive types written: 3 (train 2, test 2)" in proc.stdout
    with open(os.path.join(out, "conversion_report.json")) as f:
        report = json.load(f)
    assert report["skipped"] == local.skipped and report["written"] == local.written
    assert report["notes"] == json.loads(json.dumps(local.notes))

    expected = assert_same_records(str(tmp_path / "local"), out)
    counts = {finediving.sample_key(k): dive[1] for k, dive in DIVES.items()}
    assert sorted(expected) == ["01_4", "01_5", f"{VIDEO}_1", f"{VIDEO}_2"]
    for key, (_, record) in expected.items():
        assert len(record[features.FRAMES]) == NUM_FRAMES, key
        assert len(record["frame_step_labels"]) == counts[key], key

    # Shards as aqa_tf.data.shards names them (no empty one), and nothing of Beam's left over.
    names = sorted(os.listdir(out))
    shards = [n for n in names if n.endswith(".tfrecord")]
    assert [n for n in names if n not in shards] == ["conversion_report.json"]
    for split in ("train", "test"):
        mine = [n for n in shards if n.startswith(f"{split}-")]
        assert 1 <= len(mine) <= 2
        assert mine == [f"{split}-{i:05d}-of-{len(mine):05d}.tfrecord" for i in range(len(mine))]
    assert all(os.path.getsize(os.path.join(out, n)) > 0 for n in shards)
    assert not [n for n in os.listdir(tmp_path) if ".partial-" in n]

    # A bad Beam option is refused before anything is written.
    with pytest.raises(ConfigError, match="--beam_pipeline_options"):
        finediving.convert(frames_dir, annotations_dir, str(tmp_path / "bad"),
                           runner="DirectRunner",
                           beam_pipeline_options="--direct_num_workers=many", **OPTIONS)
    assert not os.path.exists(tmp_path / "bad")


def test_a_beam_runner_without_beam_is_refused(release, tmp_path, monkeypatch):
    """Runs everywhere (Beam installed or not): the refusal names the install command, before
    any output folder is made."""
    monkeypatch.setattr(beam_lib, "beam_available", lambda: False)
    with pytest.raises(ConfigError, match=re.escape(
            "--runner=DirectRunner needs Apache Beam, which is not installed: "
            "pip install -r requirements-beam.txt")):
        finediving.convert(*release, str(tmp_path / "out"), runner="DirectRunner", **OPTIONS)
    assert not os.path.exists(tmp_path / "out")
