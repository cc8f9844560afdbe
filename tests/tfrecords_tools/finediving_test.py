"""The FineDiving converter on the real annotation files: a synthetic frames tree for a few of
their dives (each frame's position coded in its colour), converted through the command line and
read back field by field against the annotations; bad dives reported by key while the others
are written; a missing file or folder, or a bad option, refused in one line."""

import glob
import json
import os
import pickle

import numpy as np
import pytest
import tensorflow as tf

from aqa_tf.data import features
from aqa_tf.data.shards import DataError
from tests.conftest import FINEDIVING_FILES, finediving_annotations
from tests.helpers import error_line, run_module
from tfrecords_tools import finediving

H, W = 32, 48      # the synthetic frames
RENUMBERED = 1     # the first file number of one dive's folder (the others: its start_frame)


def _load(folder, name):
    with open(os.path.join(folder, name), "rb") as f:
        return pickle.load(f)


@pytest.fixture(scope="module")
def annotations():
    folder = finediving_annotations()
    return folder, {name: _load(folder, name) for name in FINEDIVING_FILES}


def _pick(keys, coarse, fine, count=4):
    """One dive per kind, in list order: 7 judges, 5 judges, 3 judges, fewer than 96 frames."""
    kinds = [lambda k: len(coarse[k]["judge_scores"]) == 7,
             lambda k: len(coarse[k]["judge_scores"]) == 5,
             lambda k: len(coarse[k]["judge_scores"]) == 3,
             lambda k: len(fine[k]["frames_labels"]) < finediving.NUM_FRAMES]
    picked = []
    for kind in kinds[:count]:
        picked.append(next(k for k in keys if kind(k) and k not in picked))
    return picked


def _colour(position: int):
    """The colour of a dive's frame at `position` (its index in the dive): 64 steps of red,
    then green."""
    return 4 * (position % 64), 50 * (position // 64), 128


def _position(frame: np.ndarray) -> int:
    red, green, _ = frame.reshape(-1, 3).mean(axis=0)
    return int(round(green / 50)) * 64 + int(round(red / 4))


def _write_dive(frames_dir, key, count, first):
    import cv2
    folder = finediving.dive_dir(frames_dir, key)
    os.makedirs(folder)
    for i in range(count):
        frame = np.empty((H, W, 3), np.uint8)
        frame[:] = _colour(i)
        cv2.imwrite(os.path.join(folder, f"{first + i:05d}.jpg"), frame[..., ::-1])
    return folder


@pytest.fixture(scope="module")
def converted(annotations, tmp_path_factory):
    """8 real dives (4 per split) with frames, converted with the defaults; the other 2992 keys
    of the annotations have no folder."""
    folder, files = annotations
    coarse, fine = files[FINEDIVING_FILES[0]], files[FINEDIVING_FILES[1]]
    chosen = {split: _pick(files[f"{split}_split.pkl"], coarse, fine)
              for split in ("train", "test")}
    root = tmp_path_factory.mktemp("finediving")
    frames_dir, out = str(root / "FINADiving_MTL_256s"), str(root / "records")
    firsts = {}
    for keys in chosen.values():
        for key in keys:
            firsts[key] = RENUMBERED if key == chosen["test"][0] else coarse[key]["start_frame"]
            _write_dive(frames_dir, key, len(fine[key]["frames_labels"]), firsts[key])
    proc = run_module("tfrecords_tools.finediving", f"--frames_dir={frames_dir}",
                      f"--annotations_dir={folder}", f"--out_dir={out}", "--num_workers=2",
                      timeout=300)
    return chosen, firsts, out, proc


def _read(out, split):
    return {r["sample_key"]: r for r in (
        features.parse_to_numpy(x.numpy())
        for x in tf.data.TFRecordDataset(sorted(glob.glob(f"{out}/{split}-*.tfrecord"))))}


def test_real_dives_read_back_every_field(annotations, converted):
    _, files = annotations
    coarse, fine, table = (files[name] for name in FINEDIVING_FILES[:3])
    chosen, firsts, out, proc = converted
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    with open(os.path.join(out, "conversion_report.json")) as f:
        report = json.load(f)
    assert report["written"] == {"train": 4, "test": 4}
    everything = {finediving.sample_key(k) for k in coarse}
    written = {finediving.sample_key(k) for keys in chosen.values() for k in keys}
    assert len(everything) == 3000 and set(report["skipped"]) == everything - written
    assert all(reason.startswith("no frame folder ") for reason in report["skipped"].values())
    for split, keys in chosen.items():
        records = _read(out, split)
        assert sorted(records) == sorted(finediving.sample_key(k) for k in keys)
        for key in keys:
            _check_record(records[finediving.sample_key(key)], coarse[key], fine[key], table,
                          firsts[key])
    notes = report["notes"]
    dive_types = {coarse[k]["action_type"] for keys in chosen.values() for k in keys}
    assert notes["dive_types"] == len(dive_types) and notes["step_label_table_size"] == 42
    assert notes["splits"] == {
        split: {"listed": len(files[f"{split}_split.pkl"]), "written": 4,
                "dive_types": len({coarse[k]["action_type"] for k in keys})}
        for split, keys in chosen.items()}
    short = [k for keys in chosen.values() for k in keys if len(fine[k]["frames_labels"]) < 96]
    assert notes["shorter_than_num_frames"] == len(short) >= 2
    assert list(notes["frame_numbers_differ_from_annotation"]) == [
        finediving.sample_key(chosen["test"][0])]
    assert f"Dive types written: {len(dive_types)}" in proc.stdout


def _check_record(record, coarse, fine, table, first):
    assert record["schema_version"] == features.SCHEMA_VERSION
    assert (record["action_id"], record["action_name"]) == (0, "")
    assert record["dive_number"] == coarse["action_type"] == fine["action_type"]
    assert record["final_score"] == pytest.approx(coarse["dive_score"], rel=1e-6)
    assert record["difficulty"] == pytest.approx(coarse["difficulty"], rel=1e-6)
    assert record["judge_scores"] == pytest.approx(list(coarse["judge_scores"]), rel=1e-6)
    assert len(record["judge_scores"]) in (3, 5, 7)
    assert (record["start_frame"], record["end_frame"]) == (coarse["start_frame"],
                                                            coarse["end_frame"])
    assert record["num_frames"] == len(record["frames"]) == finediving.NUM_FRAMES == 96
    assert (record["height"], record["width"]) == (200, 112)
    assert record["end_index"] == 95
    assert record["caption"] == []
    assert all(record[name] == features.MISSING_INT for name in features.CLASS_LABELS)
    assert record["frame_step_labels"] == fine["frames_labels"].tolist()
    assert record["step_transitions"] == fine["steps_transit_frames"].tolist()
    types = fine["sub-action_types"]
    assert record["step_label_ids"] == sorted(int(k) for k in types)
    assert record["step_label_names"] == [types[k] for k in sorted(types)]
    assert record["step_label_names"] == [table[k] for k in record["step_label_ids"]]
    # The authors' load_video: linspace between the first and last file numbers.
    last = first + len(fine["frames_labels"]) - 1
    positions = (np.linspace(first, last, 96).astype(int) - first).tolist()
    assert record["frame_positions"] == positions
    if len(fine["frames_labels"]) < 96:
        assert len(set(positions)) < 96  # a short dive repeats frames
    stored = [features.decode_jpeg(f) for f in record["frames"]]
    assert {f.shape for f in stored} == {(200, 112, 3)}
    assert [_position(f) for f in stored] == positions


def test_inspect_prints_dive_types_and_step_labels(converted):
    chosen, _, out, _ = converted
    proc = run_module("tfrecords_tools.inspect", out, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dive types      4 in 4 samples; most common:" in proc.stdout
    assert "their final_score min" in proc.stdout
    assert "step labels" in proc.stdout and "36 Entry" in proc.stdout


def test_bad_dives_are_reported_by_key_and_the_others_written(annotations, tmp_path):
    folder, files = annotations
    coarse, fine = files[FINEDIVING_FILES[0]], files[FINEDIVING_FILES[1]]
    keys = files["test_split.pkl"][:7]
    frames_dir = str(tmp_path / "frames")
    dirs = {key: _write_dive(frames_dir, key, len(fine[key]["frames_labels"]),
                             coarse[key]["start_frame"]) for key in keys}
    good1, good2, fewer, more, gap, corrupt, unannotated = keys

    def files_of(key):
        return sorted(glob.glob(os.path.join(dirs[key], "*.jpg")))

    os.remove(files_of(fewer)[-1])
    last = files_of(more)[-1]
    os.link(last, os.path.join(dirs[more], f"{int(os.path.basename(last)[:-4]) + 1:05d}.jpg"))
    # As many files as labels, one missing in the middle.
    os.rename(files_of(gap)[5], os.path.join(
        dirs[gap], f"{int(os.path.basename(files_of(gap)[-1])[:-4]) + 1:05d}.jpg"))
    with open(files_of(corrupt)[0], "wb") as f:
        f.write(b"\xff\xd8 not a JPEG at all")
    # A copy of the annotations where one dive has no fine-grained entry.
    annotations_dir = tmp_path / "Annotations"
    annotations_dir.mkdir()
    for name in FINEDIVING_FILES:
        os.symlink(os.path.join(folder, name), annotations_dir / name)
    os.remove(annotations_dir / FINEDIVING_FILES[1])
    with open(annotations_dir / FINEDIVING_FILES[1], "wb") as f:
        pickle.dump({k: v for k, v in fine.items() if k != unannotated}, f)
    out = str(tmp_path / "records")
    proc = run_module("tfrecords_tools.finediving", f"--frames_dir={frames_dir}",
                      f"--annotations_dir={annotations_dir}", f"--out_dir={out}",
                      "--splits=test", "--num_frames=16", "--width=24", "--height=40",
                      "--num_workers=2", "--num_shards_test=2", timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    with open(os.path.join(out, "conversion_report.json")) as f:
        report = json.load(f)
    skipped = report["skipped"]
    name = finediving.sample_key
    n = {key: len(fine[key]["frames_labels"]) for key in keys}
    expected = {
        fewer: f"{n[fewer] - 1} frames (",
        more: f"{n[more] + 1} frames (",
        gap: f"{n[gap]} frames numbered {coarse[gap]['start_frame']}..",
        corrupt: "undecodable image",
        unannotated: "no entry in FineDiving_fine-grained_annotation.pkl"}
    for key, text in expected.items():
        assert text in skipped[name(key)], skipped[name(key)]
        assert f"SKIPPED {name(key)}: " in proc.stderr and f"    {name(key)}: " in proc.stdout
    assert f"gives {n[fewer]} frames_labels" in skipped[name(fewer)]
    assert "1 missing (first missing: " in skipped[name(gap)]
    assert os.path.basename(files_of(corrupt)[0]) in skipped[name(corrupt)]
    # Every other test key has no folder; the good ones are written, and only they.
    assert set(skipped) == {name(k) for k in files["test_split.pkl"]} - {name(good1),
                                                                        name(good2)}
    records = _read(out, "test")
    assert sorted(records) == sorted([name(good1), name(good2)])
    assert {(r["num_frames"], r["height"], r["width"]) for r in records.values()} == {
        (16, 40, 24)}
    assert report["written"] == {"test": 2} and not glob.glob(f"{out}/train-*")


def _annotations_without(tmp_path, missing=(), garbage=()):
    folder = finediving_annotations()
    copy = tmp_path / "Annotations"
    copy.mkdir()
    for name in FINEDIVING_FILES:
        if name in garbage:
            (copy / name).write_bytes(b"not a pickle")
        elif name not in missing:
            os.symlink(os.path.join(folder, name), copy / name)
    return str(copy)


@pytest.mark.parametrize("case", ["missing_table", "garbage_split", "no_frames_dir",
                                  "num_frames", "splits"])
def test_a_missing_file_or_bad_option_stops_in_one_line(case, tmp_path):
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    annotations_dir = _annotations_without(
        tmp_path, missing=["Sub_action_Types_Table.pkl"] if case == "missing_table" else [],
        garbage=["train_split.pkl"] if case == "garbage_split" else [])
    out = tmp_path / "records"
    args = {"frames_dir": str(frames_dir), "annotations_dir": annotations_dir,
            "out_dir": str(out)}
    names = {
        "missing_table": ["Sub_action_Types_Table.pkl", "no such file"],
        "garbage_split": ["train_split.pkl", "not a readable pickle"],
        "no_frames_dir": ["--frames_dir=", "no such folder"],
        "num_frames": ["--num_frames=0", "must be positive"],
        "splits": ["--splits=train,val"]}[case]
    if case == "no_frames_dir":
        args["frames_dir"] = str(tmp_path / "nowhere")
    extra = {"num_frames": ["--num_frames=0"], "splits": ["--splits=train,val"]}.get(case, [])
    proc = run_module("tfrecords_tools.finediving", *[f"--{k}={v}" for k, v in args.items()],
                      *extra, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    error_line(proc.stderr, *names)
    assert not out.exists() and not glob.glob(f"{out}*")


def test_two_dives_with_one_sample_key_are_refused(tmp_path):
    folder = _annotations_without(tmp_path, missing=["test_split.pkl"])
    with open(os.path.join(folder, "test_split.pkl"), "wb") as f:
        pickle.dump([("01", 120), ("07", 11), ("01", 120)], f)
    with pytest.raises(DataError, match=r"sample key 01_120 is given twice"):
        finediving.load_annotations(folder, ["test"])
    # In both splits.
    with open(os.path.join(finediving_annotations(), "train_split.pkl"), "rb") as f:
        train_key = pickle.load(f)[0]
    os.remove(os.path.join(folder, "test_split.pkl"))
    with open(os.path.join(folder, "test_split.pkl"), "wb") as f:
        pickle.dump([train_key], f)
    with pytest.raises(DataError, match="in train_split.pkl and"):
        finediving.load_annotations(folder)


def test_frame_positions_and_sample_keys():
    # The authors' expression, on broadcast frame numbers: the first and last file are kept.
    positions = finediving.frame_positions(10635, 10746, 96)
    assert positions[0] == 0 and positions[-1] == 111 and len(positions) == 96
    assert np.all(np.diff(positions) >= 1)
    short = finediving.frame_positions(95, 157, 96)  # 63 frames: repeated
    assert short[-1] == 62 and len(set(short.tolist())) == 63
    assert finediving.sample_key(("FINADivingWorldCup2021_Men3m_final_r1", np.int64(8))) == \
        "FINADivingWorldCup2021_Men3m_final_r1_8"
    assert finediving.sample_key(("01", 3)) == "01_3"
