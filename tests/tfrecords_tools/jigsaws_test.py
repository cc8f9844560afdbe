"""The JIGSAWS converter: a synthetic release converted and read back field by field, its bad
trials reported by key through the command line, the authors' real label and split files read
by the converter's readers, and the fold shards read by the input pipeline."""

import glob
import json
import os
import pickle
import shutil

import numpy as np
import pytest
import tensorflow as tf

from aqa_tf.config import DataConfig
from aqa_tf.data import features
from aqa_tf.data import jigsaws as layout
from aqa_tf.data import pipeline
from aqa_tf.data import synthetic
from tests.conftest import jigsaws_info
from tests.helpers import run_module
from tfrecords_tools import jigsaws

T, H, W = 40, 48, 64  # synthetic videos: about T frames of H x W
NUM_FRAMES = 16       # frames sampled per trial
TRIALS_PER_TASK = 5   # folds of 2, 1, 1, 1 trials


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """A synthetic JIGSAWS release: 3 tasks of 5 trials, with label.pkl and splits.pkl."""
    root = str(tmp_path_factory.mktemp("jigsaws") / "root")
    trials = synthetic.write_jigsaws_tree(root, TRIALS_PER_TASK, num_frames=T, height=H,
                                          width=W, seed=2)
    return root, {t.trial: t for t in trials}


@pytest.fixture(scope="module")
def converted(raw, tmp_path_factory):
    root, trials = raw
    out = str(tmp_path_factory.mktemp("converted") / "records")
    report = jigsaws.convert(root, os.path.join(root, "splits.pkl"), out,
                             labels_path=os.path.join(root, "label.pkl"), num_frames=NUM_FRAMES,
                             width=W, height=H, num_workers=1, progress=False)
    return out, report


def _read(paths):
    return [features.parse_to_numpy(x.numpy()) for x in tf.data.TFRecordDataset(paths)]


def _decoded(path):
    """Every frame of a video, decoded independently of the converter (PyAV)."""
    import av
    with av.open(path) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_synthetic_release_has_the_layout(raw):
    root, trials = raw
    with open(os.path.join(root, "splits.pkl"), "rb") as f:
        splits = pickle.load(f)
    with open(os.path.join(root, "label.pkl"), "rb") as f:
        labels = pickle.load(f)
    assert sorted(splits) == sorted(layout.TASKS) and len(labels) == 3 * TRIALS_PER_TASK
    for task in layout.TASKS:
        assert sorted(len(fold) for fold in splits[task]) == [1, 1, 1, 2]
        meta = open(layout.meta_path(root, task)).read().splitlines()
        assert meta[-1] == "" and len(meta) == TRIALS_PER_TASK + 1
        for line in meta[:-1]:
            name, skill, total, *elements = line.split()
            trial = trials[name]
            assert (trial.task, trial.skill, int(total)) == (task, skill, trial.total)
            assert [int(e) for e in elements] == trial.elements == labels[name]
            assert name in splits[task][trial.fold]
            assert os.path.exists(layout.video_path(root, task, name, capture=2))
    lengths = [t.num_frames for t in trials.values()]
    assert min(lengths) < T < max(lengths)
    # Steadier, faster tool tips for better trials: the totals differ, and so do the videos.
    assert len({t.total for t in trials.values()}) > 3


def test_conversion_reads_back_every_field(raw, converted):
    root, trials = raw
    out, report = converted
    with open(os.path.join(root, "splits.pkl"), "rb") as f:
        splits = pickle.load(f)
    assert report.skipped == {} and report.notes["label_disagreements"] == {}
    assert report.written == {f"{task}/fold{k}": len(splits[task][k])
                              for task in layout.TASKS for k in range(4)}
    for task in layout.TASKS:
        assert sorted(os.listdir(os.path.join(out, task))) == [
            f"fold{k}-00000-of-00001.tfrecord" for k in range(4)]
        for k in range(4):
            records = _read(glob.glob(os.path.join(out, task, f"fold{k}-*.tfrecord")))
            assert [r["sample_key"] for r in records] == splits[task][k]
            for record in records:
                _check_record(record, trials[record["sample_key"]], root)


def _check_record(record, trial, root):
    assert record["schema_version"] == features.SCHEMA_VERSION
    assert record["action_id"] == layout.TASK_IDS[trial.task]
    assert record["action_name"] == trial.task
    assert record["final_score"] == trial.total == sum(record["judge_scores"])
    assert record["judge_scores"] == [float(e) for e in trial.elements]
    assert record["num_frames"] == NUM_FRAMES == len(record["frames"])
    assert (record["height"], record["width"]) == (H, W)
    assert (record["start_frame"], record["end_frame"]) == (1, trial.num_frames)
    assert record["end_index"] == NUM_FRAMES - 1
    assert record["difficulty"] == features.MISSING_FLOAT
    assert all(record[name] == features.MISSING_INT for name in features.CLASS_LABELS)
    assert record["caption"] == [] and record["dive_number"] == ""
    # The authors' sampling over the whole video, read back from each frame's position code.
    stored = np.stack([features.decode_jpeg(f) for f in record["frames"]])
    positions = np.linspace(0, trial.num_frames - 1, num=NUM_FRAMES).astype(int)
    assert [synthetic.jigsaws_frame_code(f) for f in stored] == positions.tolist()
    # From capture1 (capture2 shows the trial in inverted colours), JPEG of those frames.
    capture1 = _decoded(layout.video_path(root, trial.task, trial.trial))[positions]
    capture2 = _decoded(layout.video_path(root, trial.task, trial.trial, capture=2))[positions]
    assert len(_decoded(layout.video_path(root, trial.task, trial.trial))) == trial.num_frames
    error = np.abs(stored.astype(int) - capture1).mean()
    assert error < 4 < np.abs(stored.astype(int) - capture2).mean(), error


def test_folds_file_and_report(raw, converted):
    root, trials = raw
    out, report = converted
    with open(os.path.join(out, layout.FOLDS_FILE)) as f:
        folds = json.load(f)
    with open(os.path.join(root, "splits.pkl"), "rb") as f:
        splits = pickle.load(f)
    assert folds["num_frames"] == NUM_FRAMES and sorted(folds["tasks"]) == sorted(layout.TASKS)
    for task, summary in folds["tasks"].items():
        assert summary["action_id"] == layout.TASK_IDS[task]
        assert summary["count"] == TRIALS_PER_TASK
        for k, fold in enumerate(summary["folds"]):
            totals = [trials[t].total for t in splits[task][k]]
            assert fold["split"] == f"fold{k}" and fold["trials"] == splits[task][k]
            assert fold["count"] == len(totals)
            assert fold["total_grs_mean"] == pytest.approx(np.mean(totals))
            assert fold["total_grs_std"] == pytest.approx(np.std(totals))
        totals = [t.total for t in trials.values() if t.task == task]
        assert summary["total_grs_std"] == pytest.approx(np.std(totals))
    with open(os.path.join(out, "conversion_report.json")) as f:
        saved = json.load(f)
    assert saved["written"] == report.written and saved["skipped"] == {}
    assert saved["notes"]["labels"].endswith("label.pkl")
    assert saved["notes"]["folds"] == {task: [len(f) for f in splits[task]]
                                       for task in layout.TASKS}
    assert not [p for p in os.listdir(os.path.dirname(out)) if ".partial" in p]


def _break(root, trials):
    """Breaks a copy of the release: a missing video, an undecodable one, a meta line whose
    total is not its elements' sum, a line naming no trial (line 1), a label.pkl entry that
    differs from the meta file, and a trial in splits.pkl that is nowhere else
    (`Suturing_Z009`). Returns the keys of the first four."""
    suturing = sorted(t for t in trials if t.startswith("Suturing_"))
    missing, garbage, bad_total, relabelled = suturing[:4]
    os.remove(layout.video_path(root, "Suturing", missing))
    with open(layout.video_path(root, "Suturing", garbage), "wb") as f:
        f.write(b"RIFF, but not a video at all" * 10)
    path = layout.meta_path(root, "Suturing")
    lines = open(path).read().splitlines()
    lines = ["this line names no trial"] + [
        line.replace(f"\t{trials[bad_total].total}\t", f"\t{trials[bad_total].total + 1}\t", 1)
        if line.startswith(bad_total + "\t") else line for line in lines]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(root, "label.pkl"), "rb") as f:
        labels = pickle.load(f)
    labels[relabelled] = [1, 1, 1, 1, 1, 1]
    with open(os.path.join(root, "label.pkl"), "wb") as f:
        pickle.dump(labels, f)
    with open(os.path.join(root, "splits.pkl"), "rb") as f:
        splits = pickle.load(f)
    splits["Suturing"][3].append("Suturing_Z009")
    with open(os.path.join(root, "splits.pkl"), "wb") as f:
        pickle.dump(splits, f)
    return missing, garbage, bad_total, relabelled


def test_bad_trials_are_reported_by_key_and_the_rest_written(raw, tmp_path):
    source, trials = raw
    root = str(tmp_path / "root")
    shutil.copytree(source, root)
    missing, garbage, bad_total, relabelled = _break(root, trials)
    out = str(tmp_path / "records")
    proc = run_module("tfrecords_tools.jigsaws", f"--root={root}",
                      f"--splits={root}/splits.pkl", f"--labels={root}/label.pkl",
                      f"--out_dir={out}", f"--num_frames={NUM_FRAMES}", "--height=24",
                      "--width=32", "--num_workers=2", "--num_shards_per_fold=2", timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    with open(os.path.join(out, "conversion_report.json")) as f:
        report = json.load(f)
    skipped = report["skipped"]
    assert sorted(skipped) == sorted([missing, garbage, bad_total, "Suturing meta line 1",
                                      "Suturing_Z009"])
    assert skipped["Suturing_Z009"] == ("no labels: not in its task's meta file, not in "
                                        "--labels")
    assert "no such file" in skipped[missing] and "capture1" in skipped[missing]
    assert "cannot be opened" in skipped[garbage]
    assert f"total GRS {trials[bad_total].total + 1} is not the sum" in skipped[bad_total]
    assert "line 1" in skipped["Suturing meta line 1"]
    for key in skipped:
        assert f"SKIPPED {key}: " in proc.stderr and f"    {key}: " in proc.stdout
    assert list(report["notes"]["label_disagreements"]) == [relabelled]
    # The others are written, the relabelled trial with --labels' labels.
    records = {r["sample_key"]: r for task in layout.TASKS
               for r in _read(glob.glob(os.path.join(out, task, "*.tfrecord")))}
    assert sorted(records) == sorted(set(trials) - {missing, garbage, bad_total})
    assert records[relabelled]["final_score"] == 6.0
    assert {(r["height"], r["width"], r["num_frames"]) for r in records.values()} == {
        (24, 32, NUM_FRAMES)}
    assert sum(report["written"].values()) == len(records)
    assert "NOTE: 1 trials' meta labels differ from --labels" in proc.stdout


def test_meta_lines_are_read_whitespace_tolerant_and_strict():
    entry = jigsaws.parse_meta_line("  Suturing_B001 \t\t N  \t 13 2 2 2 2 3 2  \n",
                                    "Suturing", 4)
    assert (entry.trial, entry.skill, entry.total, entry.elements, entry.line) == (
        "Suturing_B001", "N", 13, (2, 2, 2, 2, 3, 2), 4)
    for line, key, reason in [
            ("Suturing_B001 N 14 2 2 2 2 3 2", "Suturing_B001", "is not the sum 13"),
            ("Suturing_B001 N 18 2 2 2 2 3 7", "Suturing_B001", "7 is not a whole number 1..5"),
            ("Suturing_B001 N 13 2 2 2 2 3", "Suturing_B001", "8 fields, expected 9"),
            ("Suturing_B001 X 13 2 2 2 2 3 2", "Suturing_B001", "skill 'X'"),
            ("Suturing_B001 N 13 2 2 2.5 2 3 2", "Suturing_B001", "'2.5' is not a whole"),
            ("Knot_Tying_B001 N 13 2 2 2 2 3 2", "Suturing meta line 7", "not a trial name")]:
        with pytest.raises(jigsaws.MetaLineError) as error:
            jigsaws.parse_meta_line(line, "Suturing", 7)
        assert error.value.key == key and reason in error.value.reason, error.value.reason
        assert "meta_file_Suturing.txt line 7" in error.value.reason


def test_the_authors_label_and_split_files():
    """The real label.pkl / splits.pkl, read by the converter's own readers (README: 103
    trials; folds Needle_Passing 7/7/7/7, Suturing 9/10/10/10, Knot_Tying 9/9/9/9)."""
    folder = jigsaws_info()
    splits = jigsaws.load_splits(os.path.join(folder, "splits.pkl"))
    labels = jigsaws.load_labels(os.path.join(folder, "label.pkl"))
    assert {task: [len(fold) for fold in folds] for task, folds in splits.items()} == {
        "Needle_Passing": [7, 7, 7, 7], "Suturing": [9, 10, 10, 10], "Knot_Tying": [9, 9, 9, 9]}
    listed = [trial for folds in splits.values() for fold in folds for trial in fold]
    assert len(listed) == len(set(listed)) == len(labels) == 103
    assert set(listed) == set(labels)
    for trial, elements in labels.items():
        assert layout.grs_problem(elements) == "", (trial, elements)
        assert 6 <= sum(elements) <= 30
    notes = {"label_disagreements": {}, "labels_from_meta": []}
    assert jigsaws.trial_labels("Suturing_B001", None, labels, notes) == tuple(
        labels["Suturing_B001"])


def test_pipeline_reads_three_folds_for_training_and_one_for_test(raw, converted):
    root, trials = raw
    out, _ = converted
    with open(os.path.join(root, "splits.pkl"), "rb") as f:
        folds = pickle.load(f)["Suturing"]
    config = DataConfig(data_dir=os.path.join(out, "Suturing"), train_split="fold1,fold2,fold3",
                        test_split="fold0", val_fraction=0.0, sample_length=NUM_FRAMES,
                        num_frames=NUM_FRAMES, clip_length=8, clip_stride=8, crop_size=32,
                        temporal_jitter=0, stored_height=H, stored_width=W, batch_size=2,
                        normalization="none", random_flip=False).validate()
    assert pipeline.num_examples(config, "train") == sum(len(f) for f in folds[1:])
    assert pipeline.num_examples(config, "test") == len(folds[0])
    keys, scores = [], []
    for inputs, targets in pipeline.build_dataset(config, "test", training=False,
                                                  with_keys=True):
        assert inputs["video"].shape[1:] == (2, 8, 32, 32, 3)
        keys += [k.decode() for k in inputs["sample_key"].numpy()]
        assert {n.decode() for n in inputs["action_name"].numpy()} == {"Suturing"}
        scores += targets["score"].numpy().tolist()
    assert keys == folds[0] and scores == [trials[k].total for k in keys]
