"""The one place where aqa-tf's command-line flags are defined.

Entry modules (`train`, `evaluate`, `benchmark`) call `define_flags()` and turn the parsed flags
into config objects with `configs_from_flags()`; library code only sees the configs.
"""

import os

from absl import flags

from aqa_tf.config import NORMALIZATIONS, TEMPORAL_SAMPLINGS, DataConfig, ModelConfig, TrainConfig
from aqa_tf.data import features

FLAGS = flags.FLAGS

_defined = False


def define_flags():
    """Defines every flag once (safe to call from several entry modules)."""
    global _defined
    if _defined:
        return
    _defined = True
    d, m, t = DataConfig(), ModelConfig(), TrainConfig()

    # --- Data -----------------------------------------------------------------------------
    flags.DEFINE_string("data_dir", d.data_dir, "Folder holding the <split>-*-of-*.tfrecord shards.")
    flags.DEFINE_string("train_split", d.train_split, "Shard prefix of the training split.")
    flags.DEFINE_string("test_split", d.test_split, "Shard prefix of the held-out test split.")
    flags.DEFINE_float("val_fraction", d.val_fraction,
                       "Fraction of the training split carved out (by a seeded hash of the "
                       "sample key) as validation split; the best checkpoint is chosen on it, "
                       "never on the test split. 0: no validation, the last epoch is kept.")
    flags.DEFINE_integer("val_seed", d.val_seed, "Seed of the validation carve-out.")
    flags.DEFINE_integer("sample_length", d.sample_length,
                         "Frames loaded per sample, ending at the annotated end frame (MTL-AQA "
                         "reference: 103). 0: same as --num_frames.")
    flags.DEFINE_integer("num_frames", d.num_frames,
                         "Frames of the loaded window (from its start) that are cut into clips.")
    flags.DEFINE_integer("clip_length", d.clip_length, "Frames per clip.")
    flags.DEFINE_integer("clip_stride", d.clip_stride, "Frames between the starts of two clips.")
    flags.DEFINE_float("frame_step", d.frame_step,
                       "Temporal subsampling of the window: frame i of the clips is window frame "
                       "floor(i * frame_step). MSCADC (paper 001): 16 frames at 6.5 over a "
                       "103-frame window, as the authors' loader. 1: consecutive frames.")
    flags.DEFINE_enum("temporal_sampling", d.temporal_sampling, TEMPORAL_SAMPLINGS,
                      "Training-time temporal augmentation: 'jitter' moves the window end "
                      "uniformly in [-temporal_jitter, +temporal_jitter] (MTL-AQA reference); "
                      "'random_end_last_k' picks the end among the last random_end_k frames "
                      "(paper 002).")
    flags.DEFINE_integer("temporal_jitter", d.temporal_jitter, "Window-end jitter, frames.")
    flags.DEFINE_integer("random_end_k", d.random_end_k, "k of 'random_end_last_k'.")
    flags.DEFINE_integer("resize_height", d.resize_height,
                         "Resize frames to this height before cropping (0: keep stored size).")
    flags.DEFINE_integer("resize_width", d.resize_width,
                         "Resize frames to this width before cropping (0: keep stored size).")
    flags.DEFINE_integer("crop_size", d.crop_size, "Side of the square center crop (C3D: 112).")
    flags.DEFINE_boolean("random_flip", d.random_flip,
                         "Random horizontal flip during training (one decision per sample).")
    flags.DEFINE_enum("normalization", d.normalization, sorted(NORMALIZATIONS),
                      "Per-channel mean/std applied to [0, 1] frames. 'imagenet' is what the "
                      "MTL-AQA authors' C3D pipeline uses.")
    flags.DEFINE_integer("batch_size", d.batch_size, "Global batch size (paper 001: 3).")
    flags.DEFINE_integer("shuffle_buffer", d.shuffle_buffer, "Records in the shuffle buffer.")
    flags.DEFINE_integer("max_caption_words", d.max_caption_words,
                         "Captions are cut to this many words (MTL-AQA reference: 100), still "
                         "ending with <eos>; generation writes at most this many.")
    flags.DEFINE_string("vocab_file", d.vocab_file,
                        "Caption vocabulary (MTL-AQA vocab.json format). Empty: "
                        "<data_dir>/vocab.json, which the converters write.")

    # --- Synthetic data -------------------------------------------------------------------
    flags.DEFINE_boolean("synthesize_if_missing", False,
                         "Generate the synthetic diving dataset into --data_dir if it is absent "
                         "(quickstart).")
    flags.DEFINE_integer("synthetic_num_train", 240, "Synthetic training samples.")
    flags.DEFINE_integer("synthetic_num_test", 100, "Synthetic test samples.")
    flags.DEFINE_integer("synthetic_frames", 54, "Frames stored per synthetic sample.")
    flags.DEFINE_integer("synthetic_height", 64, "Height of synthetic frames.")
    flags.DEFINE_integer("synthetic_width", 86, "Width of synthetic frames.")
    flags.DEFINE_integer("synthetic_seed", 0, "Seed of the synthetic dataset.")

    # --- Model ----------------------------------------------------------------------------
    flags.DEFINE_string("backbone", m.backbone, "Backbone registry name, e.g. 'c3d'.")
    flags.DEFINE_float("width_multiplier", m.width_multiplier,
                       "Scales the backbone's filters (1.0: the paper's network).")
    flags.DEFINE_boolean("backbone_batch_norm", m.backbone_batch_norm,
                         "C3D: BatchNorm after each convolution (not in the paper's C3D, which "
                         "starts from Sports-1M weights; needed to train it from scratch).")
    flags.DEFINE_enum("aggregation", m.aggregation,
                      ["average", "weight_decider", "lstm_encoder", "lstm"],
                      "Clip aggregation: 'average' (C3D-AVG, paper 001), 'weight_decider' "
                      "(paper 002, eq. 1-3), 'lstm_encoder' (paper 000, section 4.3: the last "
                      "hidden state of an LSTM over the clips) or 'lstm' (paper 003's C3D-LSTM: "
                      "the same over per-clip fc6 features, LSTM weights drawn from N(0, 0.1)).")
    flags.DEFINE_integer("lstm_units", m.lstm_units, "Units of the LSTM aggregations (256).")
    flags.DEFINE_integer("backbone_fc6", m.backbone_fc6,
                         "C3D: end the backbone with fc6 of this width (4096: Sports-1M fc6, "
                         "imported with the convolutions); 0: pool5 features.")
    flags.DEFINE_list("heads", list(m.heads),
                      "Task heads: 'score' (STL) plus 'dive' (sub-action classification) and/or "
                      "'caption' (commentary generation, S2VT): MTL.")
    flags.DEFINE_list("projection_units", [],
                      "Paper 002's feature projection: per-clip fully connected layers (ReLU) "
                      "between the backbone and the aggregation, e.g. 256,128 (ResNet-34) or "
                      "512,256,128 (ResNet-50/101). Empty: none.")
    flags.DEFINE_integer("fc_units", m.fc_units,
                         "Units of fc6 after the aggregation (paper 001: 4096; 0: no fc6, the "
                         "heads read the aggregated feature, as paper 002).")
    flags.DEFINE_float("dropout", m.dropout, "Dropout after fc6 (authors' code: 0.5).")
    flags.DEFINE_list("num_classes", [f"{k}={v}" for k, v in m.num_classes],
                      "Classes per sub-action head, as name=count "
                      f"(names: {', '.join(features.CLASS_OUTPUTS)}).")
    flags.DEFINE_boolean("multiply_difficulty", m.multiply_difficulty,
                         "Paper 002: the regressor predicts execution and the score is "
                         "difficulty (from the record) x prediction.")
    flags.DEFINE_enum("caption_cell", m.caption_cell, ["gru", "lstm"],
                      "Caption RNN cells: gru (MTL-AQA authors) or lstm (paper 000).")
    flags.DEFINE_integer("caption_layers", m.caption_layers,
                         "Stacked cells in the caption encoder and decoder (authors: 2; paper "
                         "000 also 8).")
    flags.DEFINE_integer("caption_hidden", m.caption_hidden, "Caption RNN width (512).")
    flags.DEFINE_integer("caption_embedding", m.caption_embedding, "Word embedding width (512).")
    flags.DEFINE_float("caption_dropout", m.caption_dropout,
                       "Dropout between stacked caption cells (authors' settings 0.5; the "
                       "paper's text says 0.2).")
    flags.DEFINE_boolean("caption_attention", m.caption_attention,
                         "Additive attention over the clip features feeding the caption decoder "
                         "(paper 000).")
    flags.DEFINE_enum("caption_decoding", "greedy", ["greedy", "beam"],
                      "How evaluation and inference write captions (keras-hub samplers).")
    flags.DEFINE_integer("caption_beam_size", 3, "Beams of --caption_decoding=beam.")
    flags.DEFINE_float("score_std", m.score_std,
                       "Scores are divided by this for the loss (MTL-AQA: 17).")

    # --- Training -------------------------------------------------------------------------
    flags.DEFINE_string("model_dir", t.model_dir,
                        "Run folder: checkpoints, metrics, TensorBoard logs, effective flags. "
                        "Re-running with the same folder resumes.")
    flags.DEFINE_string("experiment_name", "", "Name of the export (default: model_dir's name).")
    flags.DEFINE_integer("epochs", t.epochs, "Training epochs (paper 001: 100).")
    flags.DEFINE_float("learning_rate", t.learning_rate, "Adam learning rate (paper 001: 1e-4).")
    flags.DEFINE_float("backbone_learning_rate", None,
                       "Separate Adam learning rate of the (pretrained) backbone, as paper 002; "
                       "unset: --learning_rate.")
    flags.DEFINE_enum("lr_schedule", t.lr_schedule, ["constant", "cosine"],
                      "Learning-rate schedule: constant (paper 001) or cosine decay to zero over "
                      "all training steps (both rates follow it).")
    flags.DEFINE_enum("select_on", t.select_on, ["spearman", "spearman_accuracy"],
                      "Criterion of the best checkpoint, on the validation split: Spearman rho "
                      "(the papers') or rho + mean sub-action accuracy (multitask models).")
    flags.DEFINE_enum("export_dtype", t.export_dtype, ["float32", "training"],
                      "Compute dtype of the exported SavedModel: float32 (default; scores as "
                      "the float32 model gives them) or the training policy (e.g. bfloat16).")
    flags.DEFINE_string("init_weights", "",
                        "Backbone weights to start from: a .weights.h5 file written by "
                        "`python -m aqa_tf.weights.convert` (e.g. Sports-1M C3D, Kinetics "
                        "ResNets). Empty: random initialisation.")
    flags.DEFINE_boolean("freeze_backbone", False,
                         "Do not train the backbone (paper 003 trains only the LSTM and "
                         "regressor on top of a pretrained C3D).")
    flags.DEFINE_boolean("test_every_epoch", t.test_every_epoch,
                         "Also evaluate the test split after every epoch (reported in "
                         "metrics/epoch_NNN.json, never used to choose the checkpoint). Off: "
                         "only the validation split each epoch, the test split at the end.")
    flags.DEFINE_float("score_loss_weight", t.score_loss_weight, "alpha of paper 001, eq. 4.")
    flags.DEFINE_float("class_loss_weight", t.class_loss_weight, "beta of paper 001, eq. 4.")
    flags.DEFINE_float("caption_loss_weight", t.caption_loss_weight, "gamma of paper 001, eq. 4.")
    flags.DEFINE_enum("distribution", t.distribution, ["default", "mirrored", "multi_worker"],
                      "tf.distribute strategy.")
    flags.DEFINE_integer("cpu_replicas", 0,
                         "Split the CPU into this many logical devices (to run MirroredStrategy "
                         "on a machine without accelerators, e.g. in tests). 0: do not split.")
    flags.DEFINE_enum("mixed_precision", t.mixed_precision,
                      ["none", "mixed_bfloat16", "mixed_float16"], "Keras dtype policy.")
    flags.DEFINE_boolean("jit_compile", t.jit_compile, "Compile train/predict steps with XLA.")
    flags.DEFINE_integer("seed", t.seed, "Seed of weights init, shuffling and augmentation.")
    flags.DEFINE_integer("steps_per_epoch", t.steps_per_epoch,
                         "Training steps per epoch (0: one pass over the training split).")
    flags.DEFINE_integer("backup_every_steps", t.backup_every_steps,
                         "Also save the resumable state every N steps (0: at epoch ends only).")
    flags.DEFINE_boolean("evaluate_before_training", True,
                         "Evaluate the untrained model on the test split first (a baseline "
                         "written as metrics/epoch_000.json).")
    flags.DEFINE_integer("verbose", 1, "Keras fit verbosity: 1 progress bar, 2 a line per epoch.")
    flags.DEFINE_string("export_dir", "saved_models",
                        "SavedModels go to <export_dir>/<experiment_name>/<export_version>/.")
    flags.DEFINE_integer("export_version", 1, "Version folder of the export (TF Serving layout).")


def _parse_num_classes(entries):
    counts = []
    for entry in entries:
        name, sep, count = entry.partition("=")
        if not sep or not count.strip().isdigit():
            raise ValueError(f"--num_classes entry {entry!r}: expected name=count")
        counts.append((name.strip(), int(count)))
    return tuple(counts)


def data_config_from_flags() -> DataConfig:
    return DataConfig(
        data_dir=FLAGS.data_dir, train_split=FLAGS.train_split, test_split=FLAGS.test_split,
        val_fraction=FLAGS.val_fraction, val_seed=FLAGS.val_seed,
        sample_length=FLAGS.sample_length, num_frames=FLAGS.num_frames,
        clip_length=FLAGS.clip_length, clip_stride=FLAGS.clip_stride,
        frame_step=FLAGS.frame_step,
        temporal_sampling=FLAGS.temporal_sampling, temporal_jitter=FLAGS.temporal_jitter,
        random_end_k=FLAGS.random_end_k, resize_height=FLAGS.resize_height,
        resize_width=FLAGS.resize_width, crop_size=FLAGS.crop_size,
        random_flip=FLAGS.random_flip, normalization=FLAGS.normalization,
        batch_size=FLAGS.batch_size, shuffle_buffer=FLAGS.shuffle_buffer,
        max_caption_words=FLAGS.max_caption_words, vocab_file=FLAGS.vocab_file,
        seed=FLAGS.seed).validate()


def _vocab_size(heads) -> int:
    if "caption" not in heads:
        return 0
    from aqa_tf.data import captions
    path = DataConfig(data_dir=FLAGS.data_dir, vocab_file=FLAGS.vocab_file).vocab_path
    if not os.path.exists(path):
        raise FileNotFoundError(f"the caption head needs the vocabulary {path} (--vocab_file)")
    return len(captions.Vocabulary.load(path))


def model_config_from_flags() -> ModelConfig:
    return ModelConfig(
        vocab_size=_vocab_size(FLAGS.heads), caption_cell=FLAGS.caption_cell,
        caption_layers=FLAGS.caption_layers, caption_hidden=FLAGS.caption_hidden,
        caption_embedding=FLAGS.caption_embedding, caption_dropout=FLAGS.caption_dropout,
        caption_attention=FLAGS.caption_attention,
        backbone=FLAGS.backbone, width_multiplier=FLAGS.width_multiplier,
        backbone_batch_norm=FLAGS.backbone_batch_norm, aggregation=FLAGS.aggregation,
        backbone_fc6=FLAGS.backbone_fc6, lstm_units=FLAGS.lstm_units,
        heads=tuple(FLAGS.heads), fc_units=FLAGS.fc_units,
        projection_units=tuple(int(u) for u in FLAGS.projection_units),
        dropout=FLAGS.dropout, num_classes=_parse_num_classes(FLAGS.num_classes),
        score_std=FLAGS.score_std, multiply_difficulty=FLAGS.multiply_difficulty).validate()


def train_config_from_flags() -> TrainConfig:
    if not FLAGS.model_dir:
        raise ValueError("--model_dir is required")
    return TrainConfig(
        model_dir=FLAGS.model_dir, epochs=FLAGS.epochs, learning_rate=FLAGS.learning_rate,
        backbone_learning_rate=FLAGS.backbone_learning_rate, lr_schedule=FLAGS.lr_schedule,
        test_every_epoch=FLAGS.test_every_epoch, select_on=FLAGS.select_on,
        init_weights=FLAGS.init_weights, export_dtype=FLAGS.export_dtype,
        freeze_backbone=FLAGS.freeze_backbone,
        score_loss_weight=FLAGS.score_loss_weight, class_loss_weight=FLAGS.class_loss_weight,
        caption_loss_weight=FLAGS.caption_loss_weight, distribution=FLAGS.distribution,
        caption_decoding=FLAGS.caption_decoding, caption_beam_size=FLAGS.caption_beam_size,
        mixed_precision=FLAGS.mixed_precision, jit_compile=FLAGS.jit_compile, seed=FLAGS.seed,
        steps_per_epoch=FLAGS.steps_per_epoch,
        backup_every_steps=FLAGS.backup_every_steps).validate()
