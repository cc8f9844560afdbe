"""Frozen configuration objects, and the one place where every option is defined.

Each field of a config dataclass that users may set is an `option(...)`: its default, help text
and choices sit next to the field, and `aqa_tf.flag_defs` derives the command-line flags and the
`*_from_flags` constructors from these fields. Choices are fixed tuples or registries
(`aqa_tf.registry`), so `--helpfull` lists every backbone, aggregation, normalisation, ... by
name. Entry modules build configs from flags; library code receives them and never reads flags.
"""

import dataclasses
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from aqa_tf import registry
from aqa_tf import tasks
from aqa_tf.data import jigsaws

# The TFLite variants of an export (`aqa_tf.serving.tflite_lib`): float32, float16 weights,
# int8 weights with float activations, and int8 calibrated on training windows.
QUANTIZATIONS = ("none", "float16", "dynamic_int8", "int8")


class ConfigError(ValueError):
    """A configuration value (from a flag, a flagfile or code) is invalid; the message names it."""


@dataclasses.dataclass(frozen=True)
class Option:
    """What a config field needs to become a command-line option.

    Attributes:
      help: the flag's help text.
      choices: the allowed values (for a tuple field: of its elements), a fixed sequence or a
        registry whose names are the choices.
      to_flag: field value -> flag default, where the flag holds another form (e.g. a list).
      from_flag: flag value -> field value, the inverse.
    """

    help: str
    choices: Union[None, Sequence[str], registry.Registry] = None
    to_flag: Optional[Callable[[Any], Any]] = None
    from_flag: Optional[Callable[[Any], Any]] = None

    def choice_names(self) -> Optional[List[str]]:
        if self.choices is None:
            return None
        if isinstance(self.choices, registry.Registry):
            return self.choices.names()
        return list(self.choices)


def option(default: Any, help: str, *, choices=None, to_flag=None, from_flag=None):
    """A dataclass field that is also a command-line option (see `Option`)."""
    return dataclasses.field(default=default, metadata={
        "option": Option(help, choices, to_flag, from_flag)})


def options_of(cls) -> List[Tuple[dataclasses.Field, Option]]:
    """The fields of a config class that are options, in declaration order."""
    return [(f, f.metadata["option"]) for f in dataclasses.fields(cls) if "option" in f.metadata]


class Config:
    """Base of the config dataclasses: `validate()` checks every option's choices, then the
    class's own cross-field rules (`check()`), and returns the config. An option whose default
    is None may be None (unset) whatever its choices."""

    def validate(self):
        for field, spec in options_of(type(self)):
            allowed = spec.choice_names()
            if allowed is None:
                continue
            value = getattr(self, field.name)
            if value is None and field.default is None:
                continue
            if isinstance(value, tuple):
                unknown = [v for v in value if v not in allowed]
                if unknown:
                    raise ConfigError(f"{field.name}={value!r}: unknown value(s) {unknown}; "
                                      f"expected a subset of {tuple(allowed)}")
            elif value not in allowed:
                raise ConfigError(f"{field.name}={value!r}; expected one of {allowed}")
        self.check()
        return self

    def check(self):
        """Rules that involve several fields (subclasses override)."""


def _seed():
    return option(0, "Seed of weights init, shuffling and augmentation.")


@dataclasses.dataclass(frozen=True)
class DataConfig(Config):
    """Where the records are and how videos become model inputs.

    Clip geometry (as the MTL-AQA reference cuts a dive): a window of `sample_length` frames
    ending at the annotated end frame (the window end jittered during training) is loaded, and its
    first `num_frames` frames are cut into `num_clips` clips of `clip_length` frames, clip `i`
    starting at frame `i * clip_stride`. The reference loads 103 frames and uses the first 96 as
    6 clips of 16 (its loop `range(0, frames - 17, 16)`); `sample_length=0` means the frames in use
    (`num_frames`, or what they span at `frame_step`).

    `frame_step` > 1 samples the window sparsely: the `num_frames` frames are window frames
    `floor(i * frame_step)`. MSCADC (paper 001) reads a whole dive as 16 frames this way: the
    authors' loader takes `np.arange(start, end, 6.5)` over a 103-frame window.
    """

    data_dir: str = option("", "Folder holding the <split>-*-of-*.tfrecord shards.")
    train_split: str = option(
        "train", "Shard prefix of the training split (<data_dir>/<prefix>-*-of-*.tfrecord), or a "
        "comma-separated list of prefixes read together: cross-validation run k of JIGSAWS "
        "trains on the other three folds, e.g. --train_split=fold1,fold2,fold3 "
        "--test_split=fold0.")
    test_split: str = option(
        "test", "Shard prefix of the held-out test split, or a comma-separated list of prefixes "
        "(none of them in --train_split).")
    val_fraction: float = option(
        0.1, "Fraction of the training split carved out (by a seeded hash of the sample key) "
        "as validation split; the best checkpoint is chosen on it, never on the test split. "
        "0: no validation, the last epoch is kept.")
    val_seed: int = option(0, "Seed of the validation carve-out.")
    sample_length: int = option(
        103, "Frames loaded per sample, ending at the annotated end frame (MTL-AQA reference: "
        "103). 0: the frames that --num_frames spans.")
    num_frames: int = option(96, "Frames of the loaded window (from its start) that are cut "
                             "into clips.")
    clip_length: int = option(16, "Frames per clip.")
    clip_stride: int = option(16, "Frames between the starts of two clips.")
    clip_starts: Tuple[int, ...] = option(
        (), "Instead of --clip_stride: the first frame of each clip, increasing, e.g. USDL/MUSDL's "
        "10 overlapping clips 0,10,20,30,40,50,60,70,80,87 of a 103-frame window (the authors' "
        "MTL-AQA/dataset.py); --num_frames must be the last start + --clip_length.")
    frame_step: float = option(
        1.0, "Temporal subsampling of the window: frame i of the clips is window frame "
        "floor(i * frame_step). MSCADC (paper 001): 16 frames at 6.5 over a 103-frame window, "
        "as the authors' loader. 1: consecutive frames.")
    temporal_sampling: str = option(
        "jitter", "Training-time temporal augmentation: 'jitter' moves the window end uniformly "
        "in [-temporal_jitter, +temporal_jitter] (MTL-AQA reference); 'random_end_last_k' picks "
        "the end among the last random_end_k frames (paper 002).",
        choices=("jitter", "random_end_last_k"))
    temporal_jitter: int = option(3, "Window-end jitter, frames.")
    random_end_k: int = option(10, "k of 'random_end_last_k'.")
    actions: Tuple[str, ...] = option(
        (), "Multi-action datasets (AQA-7): the actions whose training records train and "
        "validate the model. Empty: every record (all-action).", choices=tasks.AQA7_ACTIONS)
    test_actions: Tuple[str, ...] = option(
        (), "The actions of the test split that are evaluated (zero-shot: the action left out "
        "of --actions). Empty: those of --actions.", choices=tasks.AQA7_ACTIONS)
    train_samples: int = option(
        0, "Keep this many training samples (a seeded choice, fixed for the run; the fine-"
        "tuning protocol of paper 003). 0: all.")
    test_samples: int = option(
        0, "Evaluate this many test samples (a seeded choice; paper 003 fine-tuning: 50). 0: "
        "all.")
    score_normalization: str = option(
        "global", "global: scores divided by --score_std for the loss (MTL-AQA: 17). "
        "per_action: divided by the training standard deviation of their action (paper 003, "
        "AQA-7); the model reads the action of each sample and multiplies its prediction back "
        "to judges' points. per_action_standardized: the action's training mean subtracted "
        "first, then divided by its deviation (not in the paper: every action's targets are "
        "centred, so the regressor ranks within an action instead of first telling actions "
        "apart; its prediction is multiplied back and the mean added).",
        choices=("global", "per_action", "per_action_standardized"))
    pad_mode: str = option(
        "repeat_first", "How a window longer than the stored video is filled in front: "
        "repeat_first (the first frame, MTL-AQA) or zeros (black frames: paper 003 zero-pads "
        "AQA-7 videos to 103 frames).", choices=("repeat_first", "zeros"))
    stored_height: int = option(
        128, "Height of the stored frames (the converter's --height; MTL-AQA: 128). Training "
        "checks the records against it; the export resizes any video to the stored size "
        "first, as the converter does.")
    stored_width: int = option(
        171, "Width of the stored frames (the converter's --width; MTL-AQA: 171).")
    stored_jpeg_quality: int = option(
        90, "JPEG quality of the stored frames (the converter's --jpeg_quality). "
        "`aqa_tf.predict` encodes a video's frames at it, so that the model sees the "
        "compression it was trained on; 0: it feeds the decoded frames as they are.")
    frame_rate: float = option(
        0.0, "Frame rate (frames/s) of the videos the records were cut from; recorded in the "
        "export, and `aqa_tf.predict` resamples videos to it. 0: unknown (MTL-AQA keeps each "
        "broadcast's native rate), predict keeps a video's own rate.")
    resize_height: int = option(0, "Resize frames to this height before cropping (0: keep the "
                                "stored size).")
    resize_width: int = option(0, "Resize frames to this width before cropping (0: keep the "
                               "stored size).")
    crop_size: int = option(112, "Side of the square center crop (C3D: 112).")
    random_flip: bool = option(True, "Random horizontal flip during training (one decision per "
                               "sample).")
    normalization: str = option(
        "imagenet", "Per-channel mean/std applied to [0, 1] frames. 'imagenet' is what the "
        "MTL-AQA authors' C3D pipeline uses.", choices=registry.NORMALIZATIONS)
    batch_size: int = option(3, "Global batch size (paper 001: 3).")
    shuffle_buffer: int = option(64, "Records in the shuffle buffer.")
    input_autotune: str = option(
        "auto", "tf.data autotuning of the input pipeline (its parallelism and buffer sizes). "
        "'auto': off where the Keras backend sees no GPU, on otherwise. On a CPU the model and "
        "the pipeline share the cores (docs/benchmarks.md has what autotuning cost there); "
        "off, the parallel stages run at the core count. 'on'/'off' force it.",
        choices=("auto", "on", "off"))
    max_caption_words: int = option(
        100, "Captions are cut to this many words (MTL-AQA reference: 100), still ending with "
        "<eos>; generation writes at most this many.")
    vocab_file: str = option("", "Caption vocabulary (MTL-AQA vocab.json format). Empty: "
                             "<data_dir>/vocab.json, which the converters write.")
    seed: int = _seed()
    # Not an option: with score_normalization=per_action, the training standard deviation of
    # each action's scores, indexed by action id (index 0 unused: MTL-AQA records have action
    # 0). Measured on the training records (`statistics.with_action_statistics`).
    action_score_std: Tuple[float, ...] = ()
    # Not an option: with score_normalization=per_action_standardized, the training mean of each
    # action's scores, indexed as `action_score_std` (empty otherwise: no offset).
    action_score_mean: Tuple[float, ...] = ()

    @property
    def per_action_scores(self) -> bool:
        """Whether scores are normalised per action (the model reads the action)."""
        return self.score_normalization in ("per_action", "per_action_standardized")

    @property
    def evaluated_test_actions(self) -> Tuple[str, ...]:
        """The actions evaluated on the test split (empty: every record)."""
        return self.test_actions or self.actions

    @property
    def vocab_path(self) -> str:
        return self.vocab_file or f"{self.data_dir.rstrip('/')}/vocab.json"

    @property
    def window_length(self) -> int:
        return self.sample_length or self.frames_spanned

    @property
    def frames_spanned(self) -> int:
        """Window frames from the first to the last frame in use (inclusive)."""
        return int((self.num_frames - 1) * self.frame_step) + 1

    @property
    def num_clips(self) -> int:
        if self.clip_starts:
            return len(self.clip_starts)
        return (self.num_frames - self.clip_length) // self.clip_stride + 1

    def check(self):
        if self.clip_stride <= 0 or self.clip_length <= 0:
            raise ConfigError(f"clip_length={self.clip_length} and clip_stride="
                              f"{self.clip_stride} must be positive")
        if self.num_frames < self.clip_length:
            raise ConfigError(f"num_frames={self.num_frames} < clip_length={self.clip_length}")
        starts = self.clip_starts
        if starts and (starts[0] < 0 or any(b <= a for a, b in zip(starts, starts[1:]))
                       or starts[-1] + self.clip_length != self.num_frames):
            raise ConfigError(f"clip_starts={','.join(map(str, starts))}: expected increasing "
                              f"starts >= 0, the last at num_frames - clip_length = "
                              f"{self.num_frames - self.clip_length}")
        if self.frame_step < 1.0:
            raise ConfigError(f"frame_step={self.frame_step} must be >= 1")
        if self.window_length < self.frames_spanned:
            raise ConfigError(f"sample_length={self.sample_length} is shorter than the "
                              f"{self.frames_spanned} frames that num_frames={self.num_frames} "
                              f"at frame_step={self.frame_step} span")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction={self.val_fraction} must be in [0, 1)")
        if self.batch_size <= 0:
            raise ConfigError(f"batch_size={self.batch_size} must be positive")
        if not 0 <= self.stored_jpeg_quality <= 100:
            raise ConfigError(f"stored_jpeg_quality={self.stored_jpeg_quality} must be in "
                              "[0, 100]")
        if self.stored_height <= 0 or self.stored_width <= 0 or self.frame_rate < 0:
            raise ConfigError(f"stored_height={self.stored_height} and stored_width="
                              f"{self.stored_width} must be positive, frame_rate="
                              f"{self.frame_rate} >= 0")
        if self.train_samples < 0 or self.test_samples < 0:
            raise ConfigError(f"train_samples={self.train_samples} and test_samples="
                              f"{self.test_samples} must be >= 0 (0: all)")
        if self.temporal_jitter < 0 or self.random_end_k < 1:
            raise ConfigError(f"temporal_jitter={self.temporal_jitter} must be >= 0 and "
                              f"random_end_k={self.random_end_k} >= 1")
        self._check_splits()

    def _check_splits(self):
        """Each split option is a valid list of shard prefixes, and no prefix is read by both
        (a test fold that is also trained on)."""
        from aqa_tf.data import shards
        prefixes = {}
        for name in ("train_split", "test_split"):
            try:
                prefixes[name] = shards.split_prefixes(getattr(self, name))
            except ValueError as error:
                raise ConfigError(f"{name}={getattr(self, name)}: {error}") from None
        both = [p for p in prefixes["test_split"] if p in prefixes["train_split"]]
        if both:
            raise ConfigError(f"train_split={self.train_split} and test_split="
                              f"{self.test_split} both read {', '.join(both)}: the test split "
                              "must be held out")


def _class_counts_to_flag(counts: Tuple[Tuple[str, int], ...]) -> List[str]:
    return [f"{name}={count}" for name, count in counts]


def _class_counts_from_flag(entries: Sequence[str]) -> Tuple[Tuple[str, int], ...]:
    counts = []
    for entry in entries:
        name, sep, count = entry.partition("=")
        if not sep or not count.strip().isdigit():
            raise ConfigError(f"num_classes entry {entry!r}: expected name=count")
        counts.append((name.strip(), int(count)))
    return tuple(counts)


@dataclasses.dataclass(frozen=True)
class ModelConfig(Config):
    """What model to build (`aqa_tf.models.aqa_model.build_aqa_model`)."""

    backbone: str = option("c3d", "Clip backbone.", choices=registry.BACKBONES)
    width_multiplier: float = option(1.0, "Scales the backbone's filters (1.0: the paper's "
                                     "network).")
    backbone_batch_norm: bool = option(
        False, "C3D: BatchNorm after each convolution (not in the paper's C3D, which starts from "
        "Sports-1M weights; needed to train it from scratch).")
    backbone_bn_momentum: float = option(
        0.0, "Momentum of the backbone's BatchNorm moving statistics, in Keras' terms (the "
        "weight of the old statistics; PyTorch's momentum is 1 minus it). 0: the backbone's own "
        "(I3D 0.99, as pytorch-i3d's 0.01). Lower it (0.9) to train a backbone from random "
        "weights in a few hundred steps: at 0.99 the statistics the model evaluates with lag "
        "behind the weights it trained.")
    backbone_fc6: int = option(
        0, "C3D: end the backbone with fc6 of this width (4096: Sports-1M fc6, imported with the "
        "convolutions; paper 003's C3D-LSTM); 0: pool5 features.")
    lstm_units: int = option(256, "Units of the LSTM aggregations (256).")
    aggregation: str = option(
        "average", "Clip aggregation: 'average' (C3D-AVG, paper 001), 'weight_decider' (paper "
        "002, eq. 1-3), 'lstm_encoder' (paper 000, section 4.3: the last hidden state of an LSTM "
        "over the clips) or 'lstm' (paper 003's C3D-LSTM: the same over per-clip fc6 features, "
        "LSTM weights drawn from N(0, 0.1)).", choices=registry.AGGREGATIONS)
    heads: Tuple[str, ...] = option(
        ("score", "dive"), "Task heads: one score head, 'score' (regression), 'usdl' or 'musdl' "
        "(score distributions, Tang et al. 2020) or 'core' (contrastive regression with "
        "exemplars, Yu et al. 2021), alone (STL) or with 'dive' (sub-action "
        "classification) and/or 'caption' (commentary generation, S2VT): MTL.",
        choices=registry.HEADS)
    projection_units: Tuple[int, ...] = option(
        (), "Paper 002's feature projection: per-clip fully connected layers (ReLU) between the "
        "backbone and the aggregation, e.g. 256,128 (ResNet-34) or 512,256,128 (ResNet-50/101). "
        "Empty: none.")
    fc_units: int = option(4096, "Units of fc6 after the aggregation (paper 001: 4096; 0: no "
                           "fc6, the heads read the aggregated feature, as paper 002).")
    dropout: float = option(0.5, "Dropout after fc6 (authors' code: 0.5).")
    num_classes: Tuple[Tuple[str, int], ...] = option(
        tuple(tasks.MTL_AQA_NUM_CLASSES.items()),
        f"Classes per sub-action head, as name=count (names: {', '.join(tasks.CLASS_OUTPUTS)}).",
        to_flag=_class_counts_to_flag, from_flag=_class_counts_from_flag)
    score_std: float = option(17.0, "Scores are divided by this for the loss (MTL-AQA: 17).")
    multiply_difficulty: bool = option(
        False, "Paper 002: the regressor predicts execution and the score is difficulty (from "
        "the record) x prediction.")
    # Score distribution heads (USDL / MUSDL, Tang et al., CVPR 2020; the authors' MUSDL repo).
    distribution_hidden: Tuple[int, ...] = option(
        (256, 128), "usdl/musdl heads: hidden widths (ReLU) of each MLP before its softmax over "
        "the score bins (authors' models/evaluator.py: 1024-256-128-bins).")
    usdl_bins: int = option(101, "usdl head: bins of the final-score distribution, spread "
                            "evenly over --usdl_score_min..--usdl_score_max (authors' opts.py: "
                            "101 on MTL-AQA, 25 on JIGSAWS).")
    usdl_score_min: float = option(
        0.0, "usdl head: the final score of the first bin (MTL-AQA: 0; JIGSAWS: 6, the lowest "
        "total GRS, authors' JIGSAWS/opts.py label_min).")
    usdl_score_max: float = option(
        104.5, "usdl head: the final score of the last bin (authors' opts.py label_max: 104.5, "
        "MTL-AQA's highest score; JIGSAWS: 30).")
    musdl_bins: int = option(21, "musdl head: bins of each judge's distribution, spread evenly "
                             "over --musdl_judge_min..--musdl_judge_max (authors' opts.py: 21 "
                             "over 0..10 on MTL-AQA, 0.5 points apart; 5 over 1..5 on JIGSAWS).")
    musdl_judges: int = option(7, "musdl head: judges, one MLP each (MTL-AQA: 7; JIGSAWS: the "
                               "6 GRS elements). Records with another number of judge scores "
                               "train nothing of the head.")
    musdl_judge_min: float = option(0.0, "musdl head: a judge's score at the first bin "
                                    "(MTL-AQA: 0; JIGSAWS: 1).")
    musdl_judge_max: float = option(10.0, "musdl head: a judge's score at the last bin "
                                    "(MTL-AQA: 10; JIGSAWS: 5).")
    musdl_rule: str = option(
        "diving", "musdl head: how the judges' scores make the final score. diving: the sum of "
        "the middle three of 7 judges times the difficulty (MTL-AQA; the model reads "
        "`difficulty`); sum: the sum of every judge, no difficulty (JIGSAWS: the total GRS of "
        "its 6 elements).", choices=("diving", "sum"))
    distribution_std: float = option(
        5.0, "usdl/musdl heads: deviation, in bins, of the Gaussian target around the true score "
        "(authors' --std: 5).")
    distribution_readout: str = option(
        "argmax", "usdl/musdl heads: the score read out of a distribution: argmax (the most "
        "likely bin, as the authors' MTL-AQA/main.py) or expectation (the mean).",
        choices=("argmax", "expectation"))
    # Contrastive regression with exemplars (CoRe, Yu et al., ICCV 2021; yuxumin/CoRe).
    core_tree_depth: int = option(
        5, "core head: depth of the group-aware regression tree, 2^(depth-1) leaves (authors' "
        "RT_depth: 5).")
    core_hidden: int = option(256, "core head: width of the tree's nodes (authors' "
                              "hidden_channel: 256).")
    core_score_range: float = option(
        30.0, "core head: the exemplar's target is divided by this in the pair feature, and the "
        "outer groups end at +-it (authors' score_range: 30 on MTL-AQA with difficulty, where "
        "targets are executions, 100 on AQA-7).")
    core_difficulty: bool = option(
        False, "core head: compare executions (score / difficulty) and score difficulty x "
        "(exemplar execution + predicted difference), as the authors' usingDD (MTL-AQA, "
        "FineDiving with the difficulty known); the model reads `difficulty`.")
    exemplar_match: str = option(
        "dive_number", "core head: exemplars share the query's dive_number (MTL-AQA's FINA code, "
        "FineDiving's action_type), difficulty (the authors' MTL-AQA setting), action (AQA-7) "
        "or any (FineDiving's protocol without the dive type).",
        choices=("dive_number", "difficulty", "action", "any"))
    voters: int = option(10, "core head: training exemplars each test query is compared with; "
                         "the score is the mean of their predictions (authors' voter_number: "
                         "10).")
    core_groups: Tuple[float, ...] = option(
        (), "core head: the tree's groups as left,right per leaf; empty: cut from the training "
        "split's differences when the model is built (the usual way; a run folder's flags "
        "keep them).")
    # Procedure-aware relative scoring (TSA, Xu et al., CVPR 2022; xujinglin/FineDiving). It
    # compares with exemplars as the core head does: --exemplar_match, --voters and
    # --core_difficulty apply to it too.
    tsa_fix_size: int = option(
        5, "tsa head: every step's features are resampled to this many frames (authors' "
        "fix_size: 5).")
    tsa_label_fraction: float = option(
        0.25, "tsa head: for this fraction of the epochs the annotated transitions cut the steps "
        "in training, then the predicted ones (authors' prob_tas_threshold: 0.25).")
    tsa_heads: int = option(8, "tsa head: attention heads of the step decoder (authors: 8).")
    tsa_layers: int = option(3, "tsa head: cross-attention blocks of the step decoder "
                             "(authors: 3).")
    # Caption head (S2VT, paper 001; variants of paper 000).
    caption_cell: str = option("gru", "Caption RNN cells: gru (MTL-AQA authors) or lstm "
                               "(paper 000).", choices=("gru", "lstm"))
    caption_layers: int = option(2, "Stacked cells in the caption encoder and decoder (authors: "
                                 "2; paper 000 also 8).")
    caption_hidden: int = option(512, "Caption RNN width (512).")
    caption_embedding: int = option(512, "Word embedding width (512).")
    caption_dropout: float = option(
        0.5, "Dropout between stacked caption cells (authors' settings 0.5; the paper's text "
        "says 0.2).")
    caption_attention: bool = option(
        False, "Additive attention over the clip features feeding the caption decoder (paper "
        "000).")
    caption_vocab_size: int = option(
        0, "Words the caption head can produce (rows of its embedding and output layer). 0: "
        "all words of the vocabulary file. The MTL-AQA authors' released S2VT has 5779 (their "
        "opts.py) while their vocab.json has 5781 words: 5779 imports it, and the words with "
        "ids from 5779 on are never generated.")
    # Not an option: the caption head's vocabulary size (--caption_vocab_size, else the number
    # of words of the vocabulary file; MTL-AQA: 5781).
    vocab_size: int = 0

    @property
    def class_counts(self) -> Dict[str, int]:
        return dict(self.num_classes)

    def check(self):
        scoring = [n for n in self.heads if n in registry.HEADS
                   and getattr(registry.HEADS.get(n), "predicts_score", False)]
        if len(scoring) != 1:
            raise ConfigError(f"heads={self.heads}: exactly one score head is required "
                              "(score, usdl, musdl or core)")
        if self.width_multiplier <= 0:
            raise ConfigError(f"width_multiplier={self.width_multiplier} must be positive")
        if not 0.0 <= self.backbone_bn_momentum < 1.0:
            raise ConfigError(f"backbone_bn_momentum={self.backbone_bn_momentum} must be in "
                              "[0, 1) (0: the backbone's own)")
        if self.fc_units < 0 or any(u <= 0 for u in self.projection_units):
            raise ConfigError(f"fc_units={self.fc_units}, projection_units="
                              f"{self.projection_units}: widths must be positive (fc_units 0: "
                              "no fc6)")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout={self.dropout} must be in [0, 1)")
        for name in self.heads:  # each head checks its own options
            registry.HEADS.get(name, "heads").check_config(self)
        if self.score_std <= 0:
            raise ConfigError(f"score_std={self.score_std} must be positive")
        for name, count in self.num_classes:
            if name not in tasks.CLASS_OUTPUTS or count < 2:
                raise ConfigError(f"num_classes entry {name}={count}: expected one of "
                                  f"{tasks.CLASS_OUTPUTS} with at least 2 classes")


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """How to train: optimisation, the fit loop, checkpoints, devices and precision."""

    model_dir: str = option("", "Run folder: checkpoints, metrics, TensorBoard logs, effective "
                            "flags. Re-running with the same folder resumes.")
    epochs: int = option(100, "Training epochs (paper 001: 100).")
    learning_rate: float = option(1e-4, "Adam learning rate (paper 001: 1e-4).")
    backbone_learning_rate: Optional[float] = option(
        None, "Separate Adam learning rate of the (pretrained) backbone, as paper 002; unset: "
        "--learning_rate.")
    lr_schedule: str = option(
        "constant", "Learning-rate schedule: constant (paper 001), cosine decay to zero over "
        "all training steps, or step: multiplied by --lr_decay_factor every --lr_decay_steps "
        "steps (paper 003: halved every 3K iterations). Both rates follow it.",
        choices=("constant", "cosine", "step"))
    lr_decay_steps: int = option(3000, "Steps between two decays of --lr_schedule=step.")
    lr_decay_factor: float = option(0.5, "Factor of each decay of --lr_schedule=step.")
    score_loss_weight: float = option(1.0, "alpha of paper 001, eq. 4.")
    class_loss_weight: float = option(1.0, "beta of paper 001, eq. 4.")
    caption_loss_weight: float = option(0.01, "gamma of paper 001, eq. 4.")
    distribution: str = option("default", "tf.distribute strategy.",
                               choices=registry.DISTRIBUTIONS)
    cpu_replicas: int = option(
        0, "Split the CPU into this many logical devices (to run MirroredStrategy on a machine "
        "without accelerators, e.g. in tests). 0: do not split.")
    mixed_precision: str = option(
        "none", "Keras dtype policy (none: float32). auto: measured on this machine "
        "(`aqa_tf.training.precision`): a short training probe of this model in float32 and "
        "mixed_bfloat16 on a CPU, keeping the faster (cached in <model_dir>/"
        "precision_probe.json); on a GPU mixed_bfloat16 (compute capability >= 8) or "
        "mixed_float16.", choices=("none", "auto", "mixed_bfloat16", "mixed_float16"))
    precision_probe_steps: int = option(
        3, "Least number of timed rounds of the --mixed_precision=auto probe (a training step "
        "in each precision, after 2 untimed ones); more, up to 25, while they take under 5 s.")
    jit_compile: bool = option(False, "Compile train/predict steps with XLA.")
    run_eagerly: bool = option(
        False, "Run the training step op by op, without tracing it as a graph: for debugging, "
        "and for runs of a few steps, where tracing costs more than the steps.")
    init_weights: str = option(
        "", "Weights to start from, read as --init_weights_source says (e.g. a .weights.h5 "
        "written by `python -m aqa_tf.weights.convert`: Sports-1M C3D, Kinetics ResNets). "
        "Empty: random initialisation.")
    init_weights_source: str = option(
        "keras_backbone", "What --init_weights is: keras_backbone / keras_model (a .weights.h5 "
        "of the backbone / of the whole model), or a published PyTorch checkpoint converted on "
        "the fly (the sources of `python -m aqa_tf.weights.convert`; needs torch).",
        choices=registry.CHECKPOINT_SOURCES)
    freeze_backbone: bool = option(
        False, "Do not train the backbone (paper 003 trains only the LSTM and regressor on top "
        "of a pretrained C3D).")
    seed: int = _seed()
    deterministic: bool = option(
        False, "Reproducible runs: the training stream's order does not depend on thread timing "
        "(default: the parallel input pipeline hands out samples as they are ready, a little "
        "faster), and TensorFlow's ops run deterministically "
        "(tf.config.experimental.enable_op_determinism; on GPUs it excludes some of the fastest "
        "cuDNN algorithms). Same flags, seed, machine and thread count: the same run. Measured "
        "without it: two runs of one seed gave test Fisher-z 0.55 and 0.87 (small AQA-7 test, "
        "tests/protocols_test.py).")
    select_on: str = option(
        "spearman", "Criterion of the best checkpoint, on the validation split: Spearman rho "
        "(the papers') or rho + mean sub-action accuracy (multitask models).",
        choices=registry.SELECTION_RULES)
    test_every_epoch: bool = option(
        True, "Also evaluate the test split after every epoch (reported in "
        "metrics/epoch_NNN.json, never used to choose the checkpoint). Off: only the validation "
        "split each epoch, the test split at the end.")
    steps_per_epoch: int = option(0, "Training steps per epoch (0: one pass over the training "
                                  "split).")
    backup_every_steps: int = option(0, "Also save the resumable state every N steps (0: at "
                                     "epoch ends only).")
    evaluate_before_training: bool = option(
        True, "Evaluate the untrained model on the test split first (a baseline written as "
        "metrics/epoch_000.json).")
    verbose: int = option(1, "Keras fit verbosity: 1 progress bar, 2 a line per epoch.")
    export_after_training: bool = option(
        True, "Export a SavedModel of the chosen checkpoint when training ends (--export_dir). "
        "Off (e.g. for sweeps): `python -m aqa_tf.export --flagfile=<run>/flags.txt "
        "--checkpoint=<run>/best.weights.h5` exports it later.")
    synthesize_if_missing: bool = option(
        False, "Generate the synthetic diving dataset (--synthetic_* options) into --data_dir if "
        "it is absent (quickstart).")

    def check(self):
        if self.epochs <= 0:
            raise ConfigError(f"epochs={self.epochs} must be positive")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate={self.learning_rate} must be positive")
        if self.backbone_learning_rate is not None and self.backbone_learning_rate < 0:
            raise ConfigError(f"backbone_learning_rate={self.backbone_learning_rate} must be "
                              ">= 0")


@dataclasses.dataclass(frozen=True)
class EvalConfig(Config):
    """How evaluation and the exported model make their predictions."""

    caption_decoding: str = option("greedy", "How evaluation and inference write captions "
                                   "(keras-hub samplers).", choices=("greedy", "beam"))
    caption_beam_size: int = option(3, "Beams of --caption_decoding=beam.")

    def check(self):
        if self.caption_beam_size < 1:
            raise ConfigError(f"caption_beam_size={self.caption_beam_size} must be >= 1")


@dataclasses.dataclass(frozen=True)
class ExportConfig(Config):
    """Where and how a trained model is exported (TF Serving layout)."""

    export_dir: str = option("saved_models", "SavedModels go to <export_dir>/<experiment_name>/"
                             "<export_version>/.")
    export_version: int = option(1, "Version folder of the export (TF Serving layout).")
    experiment_name: str = option("", "Name of the export (default: the run folder's name).")
    export_dtype: str = option(
        "float32", "Compute dtype of the exported SavedModel: float32 (default; scores as the "
        "float32 model gives them) or the training policy (e.g. bfloat16).",
        choices=("float32", "training"))

    def export_path(self, model_dir: str) -> str:
        """`<export_dir>/<experiment_name or the run folder's name>/<export_version>`."""
        name = self.experiment_name or os.path.basename(os.path.normpath(model_dir))
        return os.path.join(self.export_dir, name, str(self.export_version))



# --- Command-line options of the entries ----------------------------------------------------
# Options that only a command reads (which weights, which video window, which server...). Each
# is declared once, here; an entry defines the flags of the classes it reads
# (`flag_defs.define_config_flags`, possibly with its own default or a subset of the choices),
# and builds the options with `flag_defs.config_from_flags`.


@dataclasses.dataclass(frozen=True)
class CheckpointOptions(Config):
    """Which weights an entry reads (evaluate, export, predict, benchmark, weights.convert)."""

    checkpoint: str = option(
        "", "Weights to read: a .weights.h5 file (evaluate: or a run folder, whose "
        "best.weights.h5 is used), or a checkpoint of the family --checkpoint_source names "
        "(weights.convert: --source), e.g. a PyTorch file or, for mtl_aqa, the folder of its "
        "<part>_<epoch>.pth files. benchmark: default random weights.")
    checkpoint_source: str = option(
        "keras_model", "Family of --checkpoint: keras_model is a .weights.h5 of the whole model "
        "(what training writes); the others are converted on the fly "
        "(`aqa_tf.weights.convert`).", choices=registry.CHECKPOINT_SOURCES)


@dataclasses.dataclass(frozen=True)
class ConversionOptions(Config):
    """What form of the model an entry writes (export) or measures (benchmark)."""

    format: str = option(
        "saved_model", "saved_model: the TF Serving SavedModel with every signature; keras: the "
        "Keras model (benchmark: its training and inference); tflite: LiteRT flatbuffers of the "
        "score and sub-action model (see --quantize).",
        choices=("keras", "saved_model", "tflite"))
    quantize: Tuple[str, ...] = option(
        ("none",), "With --format=tflite, the variants to write or measure: none (float32), "
        "float16, dynamic_int8, int8 (calibrated on --calibration_windows training windows).",
        choices=QUANTIZATIONS)
    calibration_windows: int = option(32, "Training windows that calibrate int8.")

    def check(self):
        if self.calibration_windows < 1:
            raise ConfigError(f"calibration_windows={self.calibration_windows} must be >= 1")


@dataclasses.dataclass(frozen=True)
class ScoringOptions(Config):
    """How the entries that score video files (predict, serving_client) read a video and
    report; `output_json` also names evaluate's metrics file."""

    end_time: Optional[float] = option(
        None, "The window ends at the frame shown at this time (seconds; default: the last "
        "frame).")
    end_frame: Optional[int] = option(
        None, "The window ends at this frame of the video (1-based, at the video's own frame "
        "rate; default: the last frame).")
    difficulty: Optional[float] = option(
        None, "Degree of difficulty of the dive, for models that multiply their prediction by "
        "it (--multiply_difficulty).")
    action: Optional[str] = option(
        None, "What the video shows, for multi-action models (AQA-7, paper 003), which score "
        "each action on its own scale.", choices=tasks.AQA7_ACTIONS)
    dive_type: Optional[str] = option(
        None, "FINA dive number (e.g. 407C), for models that compare the dive with exemplars "
        "of its type (CoRe, --exemplar_match=dive_number).")
    output_json: str = option(
        "", "Write the results to this JSON file (predict, serving_client: those of all "
        "videos; evaluate: the metrics, default <checkpoint>.<split>_metrics.json).")
    progress: bool = option(True, "Progress bars while decoding and scanning.")

    def check(self):
        if self.end_time is not None and self.end_frame is not None:
            raise ConfigError("give --end_time or --end_frame, not both")


@dataclasses.dataclass(frozen=True)
class PredictOptions(Config):
    """Which model `aqa_tf.predict` runs and what it writes besides the table."""

    model: str = option("", "Exported model: a SavedModel folder (<export_dir>/<name>/"
                        "<version>) or a .tflite file (aqa_tf.export --format=tflite).")
    scan: bool = option(False, "Slide the window over the whole video and write a timeline "
                        "<output_dir>/<video>_timeline.{csv,json,png}.")
    scan_stride: int = option(0, "Frames (at the model's frame rate) between two scanned "
                              "windows; 0: the clip length.")
    predict_batch_size: int = option(8, "Windows scored at once while scanning.")
    output_dir: str = option(".", "Folder of the PNG and timeline files.")
    plot: bool = option(False, "Write <output_dir>/<video>_clips.png: frames of each clip and "
                        "its contribution (Weight-Decider weights or per-clip scores); for a "
                        "distribution head (usdl, musdl) also <video>_distribution.png.")


@dataclasses.dataclass(frozen=True)
class BatchScoringOptions(Config):
    """What `aqa_tf.batch_predict` scores, where it writes, and on which Apache Beam runner
    (the exported model: `PredictOptions.model`; the window's end and the difficulty:
    `ScoringOptions`)."""

    inputs: Tuple[str, ...] = option((), "Video files: paths or glob patterns, comma-separated.")
    output: str = option("", "Output folder: results.jsonl (one JSON line per video) and "
                         "summary.csv.")
    labels: str = option(
        "", "CSV file of what each video needs besides its frames: a `video` column (the path "
        "as --inputs names it, or its file name) and any of `difficulty` (models that multiply "
        "by it), `dive_type` (FINA number, CoRe with --exemplar_match=dive_number) and `action` "
        "(multi-action AQA-7 models). --difficulty is the default for videos it leaves out.")
    inference_batch_size: int = option(8, "Most windows RunInference scores in one call.")
    runner: str = option(
        "DirectRunner", "'local': this process, one video after the other, without Beam; "
        "otherwise an Apache Beam runner (DirectRunner: on this machine, --num_workers "
        "processes; FlinkRunner, SparkRunner: see --beam_pipeline_options). Without Beam "
        "installed (pip install -r requirements-beam.txt) the default is 'local'.")
    num_workers: int = option(0, "DirectRunner processes (0: one per CPU).")
    beam_pipeline_options: str = option(
        "", "More Beam pipeline options, as on a command line, e.g. '--flink_master=HOST:8081 "
        "--parallelism=16' (the workers need this project and its requirements installed).")

    def check(self):
        if self.inference_batch_size < 1:
            raise ConfigError(f"inference_batch_size={self.inference_batch_size}: must be at "
                              "least 1")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers={self.num_workers}: must be 0 (one per CPU) or more")


@dataclasses.dataclass(frozen=True)
class ServingClientOptions(Config):
    """Which TF Serving server and model `aqa_tf.serving_client` asks."""

    server: str = option("", "gRPC address HOST:PORT of tensorflow_model_server (its --port, "
                         "8500 by default).")
    rest: str = option("", "Instead of --server: URL http://HOST:PORT of its REST API (its "
                       "--rest_api_port, 8501 by default).")
    model_name: str = option("quickstart", "Name of the model on the server (the `name` of its "
                             "models.config entry, or its --model_name).")
    model_version: str = option("", "Version number, or version label (models.config "
                                "`version_labels`, e.g. stable). Empty: the latest version the "
                                "server has.")
    metadata: str = option(
        "", "Optional: the export's assets.extra/aqa_tf.json (or the export's folder), read "
        "instead of asking the server's `metadata` signature (needed only for exports of an "
        "older aqa_tf, whose `metadata` signature has no input).")
    timeout: float = option(60.0, "Seconds to wait for each answer of the server.")


@dataclasses.dataclass(frozen=True)
class DemoOptions(Config):
    """Where `aqa_tf.demo` serves its page (the model: `--model`, or `--server`/`--rest`)."""

    port: int = option(7860, "Port of the page.")
    host: str = option("127.0.0.1", "Address the page listens on (0.0.0.0: reachable from "
                       "other machines).")
    examples: int = option(3, "Synthetic test dives offered as examples on the page (0: none).")
    queue_size: int = option(16, "Requests that may wait for the model at once; more are "
                             "refused with a message to retry.")

    def check(self):
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port={self.port}: expected 0-65535")
        if self.examples < 0 or self.queue_size < 1:
            raise ConfigError(f"examples={self.examples}, queue_size={self.queue_size}: "
                              "expected examples >= 0 and queue_size >= 1")


@dataclasses.dataclass(frozen=True)
class EvaluateOptions(Config):
    """What `aqa_tf.evaluate` evaluates."""

    split: str = option("test", "Split to evaluate.", choices=("test", "val"))


@dataclasses.dataclass(frozen=True)
class BenchmarkOptions(Config):
    """How `aqa_tf.benchmark` measures."""

    warmup_steps: int = option(2, "Untimed steps before each measurement.")
    benchmark_steps: int = option(5, "Timed steps of each measurement.")
    benchmark_output: str = option("", "JSON file for the results (default: "
                                   "benchmark_<backbone>_<precision>.json in the current "
                                   "folder).")
    batch_on_device: bool = option(
        False, "Place the fixed batch on the GPU once, before timing, instead of passing it "
        "from host memory at every step (inference takes the batch from where it lies). No "
        "effect without a GPU.")
    peak_conv: Tuple[int, ...] = option(
        (4, 8, 28, 28, 128, 256), "The Conv3D whose speed is the peak: batch, frames, height, "
        "width, input channels, filters (3x3x3 kernel, 'same' padding). Default: C3D's conv3a "
        "on a batch of 4 clips.")
    tflite_threads: int = option(0, "LiteRT interpreter threads (0: one per core).")
    parity_split: str = option("test", "With --format=tflite: split of --data_dir whose windows "
                               "compare each variant with the SavedModel ('' to skip).")
    parity_samples: int = option(0, "Windows of --parity_split to compare (0: all).")

    def check(self):
        if len(self.peak_conv) != 6:
            raise ConfigError(f"peak_conv={self.peak_conv}: expected 6 sizes (batch, frames, "
                              "height, width, input channels, filters)")


@dataclasses.dataclass(frozen=True)
class ProtocolOptions(Config):
    """Which protocol `aqa_tf.protocols` runs (paper 003's on AQA-7, the 4-fold cross-validation
    on JIGSAWS), and how."""

    protocol: Optional[str] = option(
        None, "Protocol to run: paper 003's on AQA-7 (all_action, single_action, zero_shot, "
        "finetune) or cross_validation (JIGSAWS: per task, 4 runs, each testing one fold and "
        "training on the other three).",
        choices=("all_action", "single_action", "zero_shot", "finetune", "cross_validation"))
    protocol_dir: str = option("", "Folder of the protocol's runs and results (default: "
                               "<model_dir>/<protocol>).")
    protocol_actions: Tuple[str, ...] = option(
        tasks.AQA7_ACTIONS, "The actions the per-action protocols run (single_action, "
        "zero_shot, finetune): all six by default.", choices=tasks.AQA7_ACTIONS)
    protocol_tasks: Tuple[str, ...] = option(
        jigsaws.TASKS, "cross_validation: the JIGSAWS tasks, each a folder <data_dir>/<task> of "
        "fold0..fold3 shards (tfrecords_tools.jigsaws): all three by default.",
        choices=jigsaws.TASKS)
    protocol_folds: Tuple[int, ...] = option(
        tuple(range(jigsaws.NUM_FOLDS)), "cross_validation: the test folds to run (each run "
        "still trains on the other three): all four by default; fewer (e.g. to share the runs "
        "between machines, or a quick check) average only the folds run.")
    pretrained_dir: str = option(
        "", "finetune: the zero_shot protocol folder whose <action>/best.weights.h5 (trained "
        "without that action) initialise the 'AA' models.")
    finetune_sizes: Tuple[int, ...] = option(
        (), "finetune: training-set sizes (default: the paper's 25,75,125, and 15,25,35 for the "
        "synchronised-diving actions).")
    finetune_test_samples: int = option(50, "finetune: test samples of the action.")
    finetune_batch_size: int = option(15, "finetune: batch size (paper: 15 videos).")
    dry_run: bool = option(False, "Print the runs' commands and stop.")

    def check(self):
        folds = self.protocol_folds
        if not folds or len(set(folds)) != len(folds) or not all(
                0 <= k < jigsaws.NUM_FOLDS for k in folds):
            raise ConfigError(f"protocol_folds={','.join(map(str, folds))}: expected distinct "
                              f"folds of 0..{jigsaws.NUM_FOLDS - 1}")


@dataclasses.dataclass(frozen=True)
class ConvertOptions(Config):
    """What `aqa_tf.weights.convert` converts (the checkpoint: `CheckpointOptions`)."""

    source: Optional[str] = option(None, "Checkpoint family.",
                                   choices=registry.CHECKPOINT_SOURCES)
    checkpoint_epoch: Optional[int] = option(
        None, "mtl_aqa: the epoch in the part file names (unset: <part>.pth).")
    out: str = option("", "Output Keras weights file (.weights.h5).")


# Every class of command-line options of the entries.
ENTRY_OPTIONS = (CheckpointOptions, ConversionOptions, ScoringOptions, PredictOptions,
                 BatchScoringOptions, ServingClientOptions, DemoOptions, EvaluateOptions,
                 BenchmarkOptions, ProtocolOptions, ConvertOptions)
