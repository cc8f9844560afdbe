"""End-to-end training of the commentary: the quickstart model with its S2VT caption head learns
to describe the synthetic dives, and its `caption` signature gives the Keras model's captions.

A module of its own so that, with `pytest -n 2 --dist loadfile`, its training runs beside the
quickstart training of `train_test.py` instead of after it.
"""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.train_test import (LEARNED_BLEU_4, LEARNED_CIDER, UNTRAINED_MAX_BLEU_4,
                              UNTRAINED_MAX_CIDER, keras_model_of_run, run, train_command)


@pytest.fixture(scope="module")
def caption_run(synthetic_dir, tmp_path_factory):
    """Full C3D-AVG-MTL (score, dive, caption heads) on the quickstart settings, 12 epochs at a
    constant learning rate (with a 10-epoch cosine decay the decoder sometimes had not left its
    early plateau, where greedy decoding loops on a few words)."""
    model_dir = str(tmp_path_factory.mktemp("caption_run"))
    stdout = run(train_command(synthetic_dir, model_dir, "--heads=score,dive,caption",
                               "--epochs=12", "--lr_schedule=constant"))
    return model_dir, stdout


def test_training_learns_the_commentary(caption_run, synthetic_dir):
    model_dir, stdout = caption_run
    with open(os.path.join(model_dir, "metrics", "epoch_000.json")) as f:
        untrained = json.load(f)["test"]
    with open(os.path.join(model_dir, "final_metrics.json")) as f:
        metrics = json.load(f)["metrics"]
    print({k: (untrained[k], metrics[k]) for k in metrics if k.startswith("caption/")})
    assert untrained["caption/bleu_4"] < UNTRAINED_MAX_BLEU_4
    assert untrained["caption/cider"] < UNTRAINED_MAX_CIDER
    assert metrics["caption/bleu_4"] >= LEARNED_BLEU_4
    assert metrics["caption/cider"] >= LEARNED_CIDER
    assert metrics["caption/num_scored"] == 100
    assert "caption BLEU-4" in stdout
    # The captions file: every generated caption ended with <eos> before the 40-word limit of
    # quickstart.cfg and uses vocabulary words only.
    import csv
    from aqa_tf.data import captions
    vocab = captions.Vocabulary.load(os.path.join(synthetic_dir, "vocab.json"))
    with open(os.path.join(model_dir, "test_captions.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 100
    for row in rows:
        words = row["generated"].split()
        assert 0 < len(words) < 40, row
        assert set(words) <= set(vocab.word_to_ix) - {captions.EOS, captions.SOS}, row


def test_evaluate_cli_reproduces_the_final_metrics(caption_run, tmp_path):
    model_dir, _ = caption_run
    output = str(tmp_path / "eval.json")
    run([sys.executable, "-m", "aqa_tf.evaluate", f"--flagfile={model_dir}/flags.txt",
         f"--checkpoint={model_dir}", f"--output_json={output}"])
    with open(output) as f:
        evaluated = json.load(f)["metrics"]
    with open(os.path.join(model_dir, "final_metrics.json")) as f:
        final = json.load(f)["metrics"]
    for name in ("spearman", "accuracy/position", "caption/bleu_4", "caption/cider"):
        assert abs(evaluated[name] - final[name]) < 1e-6, name
    assert os.path.getsize(str(tmp_path / "eval_captions.csv")) > 1000


def test_caption_signature_returns_the_commentary_in_a_fresh_process(caption_run, synthetic_dir,
                                                                     tmp_path):
    model_dir, _ = caption_run
    export_path = os.path.join(model_dir, "export", "quickstart", "1")
    # The first test records' frames (the last 54 frames of each dive, as stored).
    import tensorflow as tf
    from aqa_tf.data import captions, features
    records = tf.data.TFRecordDataset(sorted(glob.glob(os.path.join(synthetic_dir, "test-*"))))
    parsed = [features.parse_to_numpy(r.numpy()) for r in records.take(3)]
    video = np.stack([[features.decode_jpeg(f) for f in p["frames"]] for p in parsed])
    np.save(tmp_path / "video.npy", video)
    script = (
        "import numpy as np, tensorflow as tf\n"
        f"m = tf.saved_model.load({export_path!r})\n"
        f"v = tf.constant(np.load({str(tmp_path / 'video.npy')!r}))\n"
        "out = m.signatures['caption'](video=v)\n"
        f"np.savez({str(tmp_path / 'served.npz')!r}, **{{k: t.numpy() for k, t in out.items()}})\n")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=str(tmp_path), timeout=300)
    served = np.load(tmp_path / "served.npz", allow_pickle=True)
    vocab = captions.Vocabulary.load(os.path.join(synthetic_dir, "vocab.json"))
    assert served["caption"].shape == (3,)
    for text, ids in zip(served["caption"], served["caption_ids"]):
        words = text.decode().split()
        assert words == vocab.decode(ids) and 0 < len(words) < 40
        assert 0 in ids  # ended with <eos>
        assert set(words) <= set(vocab.word_to_ix)
    print([t.decode() for t in served["caption"]])

    # The same as the Keras model's greedy captions (same flags, best checkpoint).
    from aqa_tf.serving import export_lib
    model, data_config = keras_model_of_run(model_dir)
    expected = export_lib.caption_fn(model, data_config, vocab)(tf.constant(video))
    np.testing.assert_array_equal(served["caption_ids"], expected["caption_ids"].numpy())
