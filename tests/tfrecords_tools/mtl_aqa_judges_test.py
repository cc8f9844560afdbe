"""Judges' scores and dive numbers (issue 26, item 4): from the re-released MTL-AQA annotation
files (and synthetic ones) through the converter and the records to the training targets."""

import glob
import os
import pickle

import numpy as np
import pytest
import tensorflow as tf

from aqa_tf.config import DataConfig
from aqa_tf.data import features
from aqa_tf.data import pipeline
from aqa_tf.data import synthetic
from tests.conftest import (CORE_ANNOTATIONS, MUSDL_ANNOTATIONS, mtl_aqa_annotations,
                            mtl_aqa_judges, synthetic_records)
from tests.helpers import run_cli
from tfrecords_tools import mtl_aqa
from tfrecords_tools import mtl_aqa_raw

T, H, W = 24, 32, 43
OPTIONS = dict(sample_length=16, jitter_margin=2, width=W, height=H, num_shards_train=1,
               num_shards_test=1, num_workers=1, progress=False)


def _records(out_dir):
    files = sorted(glob.glob(os.path.join(out_dir, "*.tfrecord")))
    return {r["sample_key"]: r for r in (features.parse_to_numpy(x.numpy())
                                         for x in tf.data.TFRecordDataset(files))}


# --- the real re-released files ---

def test_real_judges_files_are_checked():
    """Every sample has 7 judges; MUSDL's typing error 45.0 of (4, 49) is the only bad score
    (none in the CoRe file); 27 final scores disagree with the judges' rule in both files."""
    annotations_dir, judges_dir = mtl_aqa_annotations(), mtl_aqa_judges()
    found = {}
    for name in (MUSDL_ANNOTATIONS, CORE_ANNOTATIONS):
        data = mtl_aqa.load_annotations(annotations_dir, os.path.join(judges_dir, name))
        annotations = data["annotations"]
        assert len(annotations) == 1412
        assert all(len(a["judge_scores"]) == 7 for a in annotations.values())
        found[name] = mtl_aqa.check_judges(annotations, sorted(annotations))
    assert list(found[MUSDL_ANNOTATIONS]["bad_judge_scores"]) == ["04_049"]
    assert "45.0" in found[MUSDL_ANNOTATIONS]["bad_judge_scores"]["04_049"]
    assert found[CORE_ANNOTATIONS]["bad_judge_scores"] == {}
    assert len(found[CORE_ANNOTATIONS]["rule_disagreements"]) == 27
    assert found[MUSDL_ANNOTATIONS]["rule_disagreements"] == \
        found[CORE_ANNOTATIONS]["rule_disagreements"]


def _real_subset(tmp_path, keys):
    """An annotations folder whose split lists hold only `keys` (captions and vocabulary are the
    real files), with 16 tiny synthetic frames ending at each sample's end frame: the videos are
    not public, the labels are what is tested."""
    real, folder = mtl_aqa_annotations(), tmp_path / "annotations"
    frames = tmp_path / "frames"
    folder.mkdir()
    for name in ("final_captions_dict.pkl", "vocab.json"):
        os.symlink(os.path.join(real, name), folder / name)
    annotations = mtl_aqa.load_annotations(real)["annotations"]
    for split in ("train", "test"):
        with open(os.path.join(real, f"{split}_split_0.pkl"), "rb") as f:
            listed = [k for k in pickle.load(f) if (int(k[0]), int(k[1])) in keys]
        with open(folder / f"{split}_split_0.pkl", "wb") as f:
            pickle.dump(listed, f)
    jpeg = features.encode_jpeg(np.full((8, 8, 3), 128, np.uint8))
    for event, sample_no in keys:
        end = annotations[(event, sample_no)]["end_frame"]
        (frames / f"{event:02d}").mkdir(parents=True, exist_ok=True)
        for number in range(end - 15, end + 1):
            (frames / f"{event:02d}" / f"{number:06d}.jpg").write_bytes(jpeg)
    return str(folder), str(frames)


@pytest.mark.parametrize("name", [MUSDL_ANNOTATIONS, CORE_ANNOTATIONS])
def test_real_judges_and_dive_numbers_read_back(name, tmp_path):
    judges_path = os.path.join(mtl_aqa_judges(), name)
    data = mtl_aqa.load_annotations(mtl_aqa_annotations(), judges_path)
    source = data["annotations"]
    disagreeing = sorted(mtl_aqa.check_judges(source, sorted(source))["rule_disagreements"])[:2]
    keys = {(1, 1), (4, 49), data["splits"]["test"][0]} | {
        tuple(int(p) for p in k.split("_")) for k in disagreeing}
    annotations_dir, frames_dir = _real_subset(tmp_path, keys)
    report = mtl_aqa.convert(annotations_dir, str(tmp_path / "out"), frames_dir=frames_dir,
                             annotations_file=judges_path, **dict(OPTIONS, jitter_margin=0))
    assert report.skipped == {} and sum(report.written.values()) == len(keys)
    assert report.written["test"] >= 1
    musdl = name == MUSDL_ANNOTATIONS
    records = _records(str(tmp_path / "out"))
    for key in keys:
        record = records[features.sample_key_for(*key)]
        if musdl and key == (4, 49):  # the bad score: stored without judges, final score kept
            assert record["judge_scores"] == []
        else:
            np.testing.assert_allclose(record["judge_scores"], source[key]["judge_scores"])
        assert record["dive_number"] == source[key].get("dive_number", "")
        assert record["final_score"] == pytest.approx(source[key]["final_score"])
    assert (records["04_049"]["dive_number"] != "") == (not musdl)
    notes = report.notes
    assert list(notes["bad_judge_scores"]) == (["04_049"] if musdl else [])
    assert sorted(notes["judges_rule_disagreements"]) == disagreeing
    assert notes["judges_rule_disagreement_count"] == 2
    assert notes["samples_with_judges"] == len(keys) - musdl
    assert notes["samples_with_dive_number"] == (0 if musdl else len(keys))
    summary = "\n".join(mtl_aqa.judges_summary(notes))
    assert ("04_049" in summary) == musdl and "WARNING: 2 final scores" in summary
    # The plain release file has no judges: the records have none either.
    report = mtl_aqa.convert(annotations_dir, str(tmp_path / "plain"), frames_dir=frames_dir,
                             annotations_file=os.path.join(mtl_aqa_annotations(),
                                                           mtl_aqa.DEFAULT_ANNOTATIONS_FILE),
                             **dict(OPTIONS, jitter_margin=0))
    assert all(r["judge_scores"] == [] and r["dive_number"] == ""
               for r in _records(str(tmp_path / "plain")).values())
    assert report.notes["samples_with_judges"] == 0 and mtl_aqa.judges_summary(report.notes) == []


# --- synthetic data ---

def test_synthetic_judges_follow_the_rule():
    rng = np.random.default_rng(0)
    for _ in range(300):
        spec = synthetic.sample_dive_spec(rng)
        judges = synthetic.judge_scores_of(spec, rng)
        assert mtl_aqa.judge_scores_problem(judges) is None, judges
        assert mtl_aqa.judges_rule_score(judges, spec.difficulty) == pytest.approx(
            spec.final_score, abs=0.01)
        code = synthetic.dive_number_of(spec)
        assert code[-1] in "ABC" and code[:-1].isdigit(), code


def _raw(tmp_path):
    samples = (list(synthetic.generate_split("train", 3, 0, T, H, W)) +
               list(synthetic.generate_split("test", 2, 0, T, H, W)))
    raw = str(tmp_path / "raw")
    mtl_aqa_raw.write_raw_dataset(raw, samples, synthetic.synthetic_vocabulary(),
                                  write_videos=False, judges=True)
    return raw, {s.sample_key: s for s in samples}


def test_synthetic_raw_judges_round_trip_and_bad_ones_are_reported(tmp_path):
    raw, samples = _raw(tmp_path)
    frames = os.path.join(raw, "frames")
    report = mtl_aqa.convert(raw, str(tmp_path / "out"), frames_dir=frames,
                             annotations_file=mtl_aqa_raw.JUDGES_FILE, **OPTIONS)
    assert report.notes["samples_with_judges"] == 5 and report.notes["bad_judge_scores"] == {}
    assert report.notes["judges_rule_disagreements"] == {}
    for key, record in _records(str(tmp_path / "out")).items():
        assert record["judge_scores"] == samples[key].judge_scores
        assert record["dive_number"] == samples[key].dive_number != ""
    # A typing error and a final score off the rule: reported by key, both still written.
    path = os.path.join(raw, mtl_aqa_raw.JUDGES_FILE)
    with open(path, "rb") as f:
        annotations = pickle.load(f)
    annotations[(1, 2)]["judge_scores"][3] = 45.0
    annotations[(2, 1)]["final_score"] += 1.0
    with open(path, "wb") as f:
        pickle.dump(annotations, f)
    proc = run_cli("tfrecords_tools.mtl_aqa", f"--annotations_dir={raw}", f"--frames_dir={frames}",
                   f"--annotations_file={path}", f"--out_dir={tmp_path / 'cli'}",
                   "--sample_length=16", "--jitter_margin=2", f"--width={W}", f"--height={H}",
                   "--num_workers=1", expect=0)
    assert "4 samples with judges' scores, 5 with dive numbers" in proc.stdout
    assert "1 samples with BAD judge scores" in proc.stdout and "01_002: judge" in proc.stdout
    assert "WARNING: 1 final scores disagree" in proc.stdout and "02_001" in proc.stdout
    records = _records(str(tmp_path / "cli"))
    assert len(records) == 5 and records["01_002"]["judge_scores"] == []
    assert records["02_001"]["judge_scores"] == samples["02_001"].judge_scores


def _config(data_dir):
    return DataConfig(data_dir=data_dir, sample_length=16, num_frames=16, clip_length=8,
                      clip_stride=8, crop_size=32, batch_size=3, normalization="none",
                      val_fraction=0.0, random_flip=False)


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """Synthetic records (1 train, 4 test) with judges' scores and the same without them."""
    fields = dict(num_train=1, num_test=4, num_frames=20, height=H, width=W, seed=0)
    with_judges = str(tmp_path_factory.mktemp("judges"))
    synthetic.write_tfrecords(with_judges, synthetic.SyntheticDataConfig(**fields),
                              num_workers=1, judges=True)
    return with_judges, synthetic_records(tmp_path_factory.mktemp("plain"), num_workers=1,
                                          **fields)


def test_build_dataset_gives_judges_or_minus_ones(judged):
    with_judges, without = judged
    expected = [s.judge_scores for s in synthetic.generate_split("test", 4, 0, 20, H, W)]
    for folder, want in ((with_judges, expected), (without, [[-1.0] * 7] * 4)):
        got, keys = [], []
        for inputs, targets in pipeline.build_dataset(_config(folder), "test", training=False,
                                                      include_judges=True, with_keys=True):
            assert targets["judge_scores"].dtype == tf.float32
            assert targets["judge_scores"].shape[1:] == (7,)
            # with_keys' metadata: the dive number where the records have one, else b"".
            assert all(bool(d) == (folder == with_judges) for d in inputs["dive_number"].numpy())
            got += targets["judge_scores"].numpy().tolist()
            keys += [k.decode() for k in inputs["sample_key"].numpy()]
        assert keys == ["02_001", "02_002", "02_003", "02_004"]
        np.testing.assert_allclose(got, want)
    inputs, targets = next(iter(pipeline.build_dataset(_config(with_judges), "test", False)))
    assert "judge_scores" not in targets and "dive_number" not in inputs
    assert _records(without)["02_001"]["judge_scores"] == []


def test_inspect_counts_judges(judged):
    from tfrecords_tools import inspect
    judges = inspect.inspect_paths([judged[0]], decode_frames=False)["splits"]["test"]["judges"]
    scores = [v for s in synthetic.generate_split("test", 4, 0, 20, H, W) for v in s.judge_scores]
    assert judges["samples_with_judges"] == 4 and judges["samples_with_dive_number"] == 4
    assert judges["judge_scores"]["min"] == min(scores)
    assert judges["judge_scores"]["max"] == max(scores)
    plain = inspect.inspect_paths([judged[1]], decode_frames=False)["splits"]["test"]["judges"]
    assert plain == {"samples_with_judges": 0, "samples_with_dive_number": 0,
                     "judge_scores": None}
