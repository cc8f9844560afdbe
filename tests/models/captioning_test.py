"""S2VT caption head: masked loss, teacher forcing equal to step-by-step decoding, generation,
every variant of paper 000 training a step and round-tripping through save/load, and the
caption metrics against pycocoevalcap run directly."""

import csv

import numpy as np
import pytest

import keras
import tensorflow as tf

from aqa_tf.metrics import captions as caption_metrics
from aqa_tf.config import DataConfig, ModelConfig
from aqa_tf.models.losses import CaptionLoss
from aqa_tf.models import aqa_model
from aqa_tf.models.captioning import S2VTCaptioner

VOCAB = 12
DATA = DataConfig(sample_length=32, num_frames=32, clip_length=16, crop_size=32,
                  max_caption_words=6)


def _config(**kw):
    base = dict(width_multiplier=0.0625, backbone_batch_norm=True, fc_units=8,
                heads=("score", "dive", "caption"), vocab_size=VOCAB, caption_hidden=16,
                caption_embedding=8)
    base.update(kw)
    return ModelConfig(**base)


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    video = rng.standard_normal((2, 2, 16, 32, 32, 3)).astype("float32")
    # <sos> w.. then padding; targets are the next words, -1 after <eos>.
    tokens = np.array([[1, 5, 6, 7, 0, 0, 0], [1, 8, 9, 0, 0, 0, 0]], np.int32)
    targets = np.array([[5, 6, 7, 0, -1, -1, -1], [8, 9, 0, -1, -1, -1, -1]], np.int32)
    return video, tokens, targets


def test_padding_positions_add_nothing_to_the_loss():
    model = aqa_model.build_aqa_model(_config(), DATA)
    video, tokens, targets = _batch()
    loss = CaptionLoss()
    logits = model({"video": video, "caption_tokens": tokens}, training=False)["caption"]
    reference = float(loss(targets, logits))
    # Other token ids in the padding positions (after <eos>) change the logits there, not
    # the loss: those targets are masked.
    noisy = tokens.copy()
    noisy[0, 5:] = [3, 4]
    noisy[1, 4:] = [10, 2, 7]
    noisy_logits = model({"video": video, "caption_tokens": noisy}, training=False)["caption"]
    assert not np.allclose(np.asarray(noisy_logits)[0, 5:], np.asarray(logits)[0, 5:])
    assert abs(float(loss(targets, noisy_logits)) - reference) < 1e-6
    # Summed over the real words, averaged over the batch (the authors' criterion).
    log_probs = np.asarray(tf.nn.log_softmax(logits))
    manual = -sum(log_probs[b, t, targets[b, t]] for b in range(2) for t in range(7)
                  if targets[b, t] >= 0) / 2
    assert abs(reference - manual) < 1e-4
    # A sample without a caption (all -1) contributes zero but counts in the batch.
    no_caption = targets.copy()
    no_caption[1] = -1
    per_sample = np.asarray(CaptionLoss(reduction=None)(no_caption, logits))
    assert per_sample[1] == 0.0 and per_sample[0] > 0


@pytest.mark.parametrize("cell, attention", [("gru", False), ("lstm", True), ("gru", True)])
def test_teacher_forcing_equals_step_by_step_decoding(cell, attention):
    captioner = S2VTCaptioner(VOCAB, cell=cell, num_layers=2, hidden_units=16, embedding_dim=8,
                              attention=attention)
    rng = np.random.default_rng(1)
    features = tf.constant(rng.standard_normal((2, 3, 10)).astype("float32"))
    _, tokens, _ = _batch()
    forced = np.asarray(captioner([features, tokens], training=False))
    visual, states = captioner.begin(features, tokens.shape[1])
    stepped = []
    for t in range(tokens.shape[1]):
        logits, states = captioner.step(tf.constant(tokens[:, t]), visual[:, t], states)
        stepped.append(np.asarray(logits))
    np.testing.assert_allclose(np.stack(stepped, axis=1), forced, atol=1e-5)


def test_generation_ends_with_eos_and_greedy_follows_the_argmax():
    captioner = S2VTCaptioner(VOCAB, hidden_units=16, embedding_dim=8)
    features = tf.constant(np.random.default_rng(2).standard_normal((3, 2, 10)), tf.float32)
    greedy = np.asarray(captioner.generate(features, max_words=5))
    beam = np.asarray(captioner.generate(features, max_words=5, method="beam", beam_size=3))
    for ids in (greedy, beam):
        assert ids.shape == (3, 6) and (ids[:, -1] == 0).all()
        assert ((ids >= 0) & (ids < VOCAB)).all()
    # Greedy: feeding its own words back, each is the argmax of the teacher-forced logits.
    tokens = np.concatenate([np.ones((3, 1), np.int32), greedy[:, :-1]], axis=1)
    forced = np.asarray(captioner([features, tokens], training=False))
    for b in range(3):
        for t in range(5):  # the last position is always <eos> (a caption of 5 words at most)
            if t and greedy[b, t - 1] == 0:
                break
            assert greedy[b, t] == np.argmax(forced[b, t])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("layers", [2, 8])
@pytest.mark.parametrize("attention", [False, True])
def test_every_variant_trains_a_step_and_round_trips(cell, layers, attention, tmp_path):
    keras.utils.set_random_seed(0)
    model = aqa_model.build_aqa_model(
        _config(caption_cell=cell, caption_layers=layers, caption_attention=attention), DATA)
    from aqa_tf.config import TrainConfig
    losses, weights = model.loss_dicts(TrainConfig(class_loss_weight=1.0,
                                                   caption_loss_weight=0.01))
    # Eager: tracing the step of an 8-layer RNN over 9 steps as a graph costs ~20 s here.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=losses, loss_weights=weights,
                  run_eagerly=True)
    video, tokens, targets = _batch()
    y = {"score": np.array([50.0, 70.0], np.float32), "caption": targets}
    for name, count in _config().class_counts.items():
        y[name] = np.array([0, 1], np.int32) % count
    captioner = model.get_layer("captioner")
    before = [np.array(w) for w in captioner.trainable_weights]
    logs = model.train_on_batch({"video": video, "caption_tokens": tokens}, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    changed = {w.path for b, w in zip(before, captioner.trainable_weights)
               if not np.allclose(b, np.asarray(w))}
    # The word path always learns. (In an 8-layer LSTM stack at initialisation the encoder's
    # gradients, 16 layers away from the loss, are too small for one Adam step to show.)
    top = f"captioner/rnn2_l{layers - 1}"
    assert {"captioner/out/kernel", "captioner/embedding/embeddings"} <= changed
    assert any(path.startswith(top) for path in changed)
    if layers == 2:
        assert len(changed) == len(before)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    x = {"video": video, "caption_tokens": tokens}
    np.testing.assert_allclose(np.asarray(restored(x)["caption"]),
                               np.asarray(model(x)["caption"]), atol=1e-5)
    assert restored.get_layer("captioner").get_config() == captioner.get_config()


def test_metrics_equal_pycocoevalcap_run_directly_on_the_captions_file(tmp_path):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    references = {"01_001": ["a forward two somersaults in the pike position clean entry"],
                  "01_002": ["a reverse dive with one twist small splash on entry"],
                  "01_003": ["from a handstand a backward three somersaults big splash"]}
    generated = {"01_001": "a forward two somersaults in the tuck position clean entry",
                 "01_002": "a reverse dive small splash",
                 "01_003": "a backward three somersaults big splash on entry"}
    ours = caption_metrics.caption_scores(references, generated)
    path = str(tmp_path / "captions.csv")
    caption_metrics.write_captions(path, sorted(generated), references, generated)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    gts = {r["sample_key"]: [r["reference"]] for r in rows}
    res = {r["sample_key"]: [r["generated"]] for r in rows}
    bleu = Bleu(4).compute_score(gts, res, verbose=0)[0]
    direct = {f"caption/bleu_{n + 1}": bleu[n] for n in range(4)}
    direct["caption/rouge_l"] = Rouge().compute_score(gts, res)[0]
    direct["caption/cider"] = Cider().compute_score(gts, res)[0]
    if ours.get("caption/meteor") is not None:
        direct["caption/meteor"] = Meteor().compute_score(gts, res)[0]
    else:
        assert ours["caption/meteor_unavailable"]
    for name, value in direct.items():
        assert abs(ours[name] - value) <= 1e-6, (name, ours[name], value)
    assert ours["caption/num_scored"] == 3
