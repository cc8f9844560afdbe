import glob
import json
import math
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from scipy.io import loadmat, savemat

from aqa_tf.data import aqa7 as aqa7_layout
from aqa_tf.data import features
from aqa_tf.data import synthetic
from aqa_tf.data.shards import DataError
from tests.helpers import run_module
from tfrecords_tools import aqa7
from tfrecords_tools import inspect as inspect_lib

T, H, W = 20, 32, 40          # raw frames
STORED_H, STORED_W = 24, 30   # the converter resizes to this
OPTIONS = dict(width=STORED_W, height=STORED_H, num_shards_train=2, num_shards_test=1,
               num_workers=1, progress=False)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """A synthetic AQA-7 release: six actions, 2 training + 1 test samples each."""
    root = str(tmp_path_factory.mktemp("aqa7") / "root")
    samples = synthetic.write_aqa7_tree(root, 2, 1, num_frames=T, height=H, width=W, seed=3)
    return root, {s.sample_key: s for s in samples}


def _read_split(out_dir, split):
    files = sorted(glob.glob(os.path.join(out_dir, f"{split}-*.tfrecord")))
    return {r["sample_key"]: r for r in (features.parse_to_numpy(x.numpy())
                                         for x in tf.data.TFRecordDataset(files))}


def _cli(*args):
    return run_module(*args, timeout=300)


def test_synthetic_tree_has_the_release_layout(raw):
    root, samples = raw
    assert len(samples) == 18
    for split, count in (("train", 12), ("test", 6)):
        name, variable = aqa7_layout.SPLIT_FILES[split]
        rows = loadmat(os.path.join(root, "Split_4", name))[variable]
        assert rows.dtype == np.float64 and rows.shape == (count, 3)
        for index, number, score in rows:
            sample = samples[aqa7_layout.sample_key(aqa7_layout.action_name(index), number)]
            assert sample.split == split and sample.final_score == score
    for sample in samples.values():
        low, high = synthetic.AQA7_STYLES[sample.action_name].score_range
        assert low <= sample.final_score <= high
        folder = aqa7_layout.sample_dir(root, sample.action_name, sample.sample_number)
        assert sorted(os.listdir(folder)) == [f"img_{n:05d}.jpg"
                                              for n in range(1, sample.num_frames + 1)]
    lengths = [s.num_frames for s in samples.values()]
    assert min(lengths) < T < max(lengths)  # some shorter than the window: padded in training
    # The actions look different: mean colour of the first frame per action.
    means = {s.action_name: features.decode_jpeg(open(os.path.join(aqa7_layout.sample_dir(
        root, s.action_name, s.sample_number), "img_00001.jpg"), "rb").read()).mean(axis=(0, 1))
        for s in samples.values()}
    assert len({tuple(np.round(m / 10)) for m in means.values()}) == 6


def test_conversion_reads_back_every_field(raw, tmp_path):
    root, samples = raw
    out = str(tmp_path / "records")
    report = aqa7.convert(root, out, **OPTIONS)
    assert report.skipped == {} and report.written == {"train": 12, "test": 6}
    for split in ("train", "test"):
        records = _read_split(out, split)
        assert sorted(records) == sorted(k for k, s in samples.items() if s.split == split)
        for key, record in records.items():
            sample = samples[key]
            assert record["schema_version"] == 2
            assert record["action_id"] == sample.action_index
            assert record["action_name"] == sample.action_name
            assert aqa7_layout.ACTIONS[record["action_id"] - 1] == record["action_name"]
            assert record["final_score"] == pytest.approx(sample.final_score, rel=1e-6)
            assert record["num_frames"] == sample.num_frames == len(record["frames"])
            assert (record["height"], record["width"]) == (STORED_H, STORED_W)
            assert (record["start_frame"], record["end_frame"]) == (1, sample.num_frames)
            assert record["end_index"] == sample.num_frames - 1
            assert record["difficulty"] == features.MISSING_FLOAT
            for name in features.CLASS_LABELS:
                assert record[name] == features.MISSING_INT, name
            assert record["caption"] == []
            stored = np.stack([features.decode_jpeg(f) for f in record["frames"]]).astype(int)
            assert stored.shape == (sample.num_frames, STORED_H, STORED_W, 3)
            # Frame order and content: each stored frame is the resized source frame.
            folder = aqa7_layout.sample_dir(root, sample.action_name, sample.sample_number)
            source = np.stack([
                synthetic_resized(os.path.join(folder, f"img_{n:05d}.jpg"))
                for n in range(1, sample.num_frames + 1)]).astype(int)
            errors = np.abs(stored - source).mean(axis=(1, 2, 3))
            assert errors.max() < 10, errors  # JPEG of tiny noisy frames, twice
            shifted = np.abs(stored[1:] - source[:-1]).mean(axis=(1, 2, 3))
            assert np.all(errors[1:] < shifted)  # and in order

    # Per-action summary: counts, and mean / population std of the training scores only.
    with open(os.path.join(out, aqa7_layout.ACTIONS_FILE)) as f:
        summary = json.load(f)["actions"]
    assert summary == aqa7_layout.load_action_stats(out) == report.notes["actions"]
    assert [a["name"] for a in summary] == list(aqa7_layout.ACTIONS)
    for a in summary:
        train = [s.final_score for s in samples.values()
                 if s.action_name == a["name"] and s.split == "train"]
        mean = sum(train) / len(train)
        std = math.sqrt(sum((x - mean) ** 2 for x in train) / len(train))
        assert a["index"] == aqa7_layout.action_index(a["name"])
        assert (a["num_train"], a["num_test"]) == (2, 1)
        assert a["train_score_mean"] == pytest.approx(mean, rel=1e-9)
        assert a["train_score_std"] == pytest.approx(std, rel=1e-9)
    with open(os.path.join(out, "conversion_report.json")) as f:
        assert json.load(f)["written"] == {"train": 12, "test": 6}

    # inspect reads the output: counts, frame sizes, per-action scores, no problems.
    result = inspect_lib.inspect_paths([out])
    assert result["problems"] == []
    assert result["splits"]["train"]["count"] == 12
    assert set(result["splits"]["test"]["frame_shapes"]) == {f"({STORED_H}, {STORED_W}, 3)"}
    assert result["splits"]["train"]["actions"]["2 gym_vault"]["count"] == 2
    proc = _cli("tfrecords_tools.inspect", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "every record parsed and every frame decoded" in proc.stdout
    assert "action 6 sync_diving_10m" in proc.stdout


def synthetic_resized(path):
    from aqa_tf.data.video import resize_frame
    with open(path, "rb") as f:
        return resize_frame(features.decode_jpeg(f.read()), STORED_W, STORED_H)


def test_actions_subset_from_the_command_line(raw, tmp_path):
    root, samples = raw
    out = str(tmp_path / "subset")
    proc = _cli("tfrecords_tools.aqa7", f"--root={root}", f"--out_dir={out}",
                "--actions=diving,gym_vault", f"--height={H}", f"--width={W}", "--num_workers=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = {**_read_split(out, "train"), **_read_split(out, "test")}
    assert sorted(records) == sorted(k for k, s in samples.items()
                                     if s.action_name in ("diving", "gym_vault"))
    assert "train: 4 samples written" in proc.stdout and "test: 2 samples written" in proc.stdout
    assert [a["name"] for a in aqa7_layout.load_action_stats(out)] == ["diving", "gym_vault"]
    # Same size as the source: the frames are still re-encoded, at --jpeg_quality.
    assert all((r["height"], r["width"]) == (H, W) for r in records.values())


def _break(root, tmp_path, samples):
    """A copy of the release with a missing frame folder, a missing frame, a corrupt JPEG, a NaN
    score and a row of an unknown action (7, trampoline)."""
    broken = str(tmp_path / "broken")
    shutil.copytree(root, broken)
    train = sorted(k for k, s in samples.items() if s.split == "train")
    test = sorted(k for k, s in samples.items() if s.split == "test")
    missing_folder, missing_frame, corrupt = train[0], train[2], train[4]
    nan_score = test[0]
    for key, damage in ((missing_folder, "folder"), (missing_frame, "frame"), (corrupt, "jpeg")):
        s = samples[key]
        folder = aqa7_layout.sample_dir(broken, s.action_name, s.sample_number)
        if damage == "folder":
            shutil.rmtree(folder)
        elif damage == "frame":
            os.remove(os.path.join(folder, "img_00005.jpg"))
        else:
            with open(os.path.join(folder, "img_00003.jpg"), "wb") as f:
                f.write(b"\xff\xd8 this is not a jpeg")
    path = os.path.join(broken, "Split_4", "split_4_test_list.mat")
    rows = loadmat(path)["consolidated_test_list"]
    s = samples[nan_score]
    rows[(rows[:, 0] == s.action_index) & (rows[:, 1] == s.sample_number), 2] = np.nan
    rows = np.concatenate([rows, [[7.0, 12.0, 40.5]]])
    savemat(path, {"consolidated_test_list": rows})
    return broken, {"folder": missing_folder, "frame": missing_frame, "jpeg": corrupt,
                    "nan": nan_score, "action": "action7_012"}


def test_bad_samples_are_reported_and_the_good_ones_written(raw, tmp_path):
    root, samples = raw
    broken, bad = _break(root, tmp_path, samples)
    out = str(tmp_path / "records")
    report = aqa7.convert(broken, out, **OPTIONS)
    assert set(report.skipped) == set(bad.values())
    assert "frame folder" in report.skipped[bad["folder"]] and \
        "does not exist" in report.skipped[bad["folder"]]
    assert "missing 1 of the frames" in report.skipped[bad["frame"]] and \
        "img_00005.jpg" in report.skipped[bad["frame"]]
    assert "undecodable image" in report.skipped[bad["jpeg"]] and \
        "img_00003.jpg" in report.skipped[bad["jpeg"]]
    assert "score is nan" in report.skipped[bad["nan"]]
    assert "action index 7 outside 1..6" in report.skipped["action7_012"]
    written = {**_read_split(out, "train"), **_read_split(out, "test")}
    assert sorted(written) == sorted(set(samples) - set(bad.values()))
    assert report.written == {"train": 9, "test": 5}
    # The statistics count only what was written.
    counts = {a["name"]: (a["num_train"], a["num_test"]) for a in report.notes["actions"]}
    assert sum(n for n, _ in counts.values()) == 9 and sum(n for _, n in counts.values()) == 5

    proc = _cli("tfrecords_tools.aqa7", f"--root={broken}", f"--out_dir={tmp_path / 'cli'}",
                f"--height={H}", f"--width={W}", "--num_workers=2")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"sample {bad['jpeg']}: undecodable image" in proc.stderr
    assert "5 samples SKIPPED" in proc.stdout
    for key in bad.values():
        assert f"    {key}: " in proc.stdout


def test_missing_or_malformed_split_file(raw, tmp_path):
    root, _ = raw
    broken = str(tmp_path / "no_split")
    shutil.copytree(os.path.join(root, "Split_4"), os.path.join(broken, "Split_4"))
    os.remove(os.path.join(broken, "Split_4", "split_4_test_list.mat"))
    with pytest.raises(FileNotFoundError, match="split_4_test_list.mat is missing"):
        aqa7.convert(broken, str(tmp_path / "a"), **OPTIONS)
    savemat(os.path.join(broken, "Split_4", "split_4_test_list.mat"),
            {"test_list": np.zeros((2, 3))})
    with pytest.raises(DataError, match="no variable 'consolidated_test_list'"):
        aqa7.convert(broken, str(tmp_path / "b"), **OPTIONS)
    savemat(os.path.join(broken, "Split_4", "split_4_test_list.mat"),
            {"consolidated_test_list": np.zeros((2, 4))})
    with pytest.raises(DataError, match=r"expected numbers \[N, 3\]"):
        aqa7.convert(broken, str(tmp_path / "c"), **OPTIONS)
    assert not os.path.exists(str(tmp_path / "c"))  # checked before anything is written
    # Issue 24, case 7: a truncated MAT file (before: an OSError traceback).
    path = os.path.join(broken, "Split_4", "split_4_test_list.mat")
    savemat(path, {"consolidated_test_list": np.zeros((200, 3))})
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(DataError, match="split_4_test_list.mat: not a readable MAT file"):
        aqa7.convert(broken, str(tmp_path / "d"), **OPTIONS)

    os.remove(os.path.join(broken, "Split_4", "split_4_train_list.mat"))
    proc = _cli("tfrecords_tools.aqa7", f"--root={broken}", f"--out_dir={tmp_path / 'cli'}")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "split_4_train_list.mat is missing" in errors[0]
    assert "Traceback" not in proc.stderr


def test_unknown_action_name():
    with pytest.raises(ValueError, match="unknown AQA-7 action 'trampoline'; known: diving"):
        aqa7.convert("/nonexistent", "/nonexistent", actions=("trampoline",))
