"""Frozen configuration objects. Entry modules build them from flags (`flag_defs.py`);
library code receives them and never reads global flags."""

import dataclasses
import json
from typing import Dict, Optional, Tuple

from aqa_tf.data import features

# Normalisation constants (mean, std) applied to frames scaled to [0, 1].
NORMALIZATIONS = {
    # The MTL-AQA authors' C3D pipeline: ImageNet statistics on [0, 1] RGB frames.
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # Kinetics statistics (3D-ResNets-PyTorch, on [0, 1] frames).
    "kinetics": ((0.4345, 0.4051, 0.3775), (0.2768, 0.2713, 0.2737)),
    # torchvision video models and the IG-65M R(2+1)D checkpoints (on [0, 1] frames).
    "torchvision_video": ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)),
    # Map [0, 1] to [-1, 1] (S3D / Inception style).
    "symmetric": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
TEMPORAL_SAMPLINGS = ("jitter", "random_end_last_k")


@dataclasses.dataclass(frozen=True)
class DataConfig:
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

    data_dir: str = ""
    train_split: str = "train"
    test_split: str = "test"
    val_fraction: float = 0.1
    val_seed: int = 0
    sample_length: int = 103
    num_frames: int = 96
    clip_length: int = 16
    clip_stride: int = 16
    frame_step: float = 1.0
    temporal_sampling: str = "jitter"
    temporal_jitter: int = 3
    random_end_k: int = 10
    resize_height: int = 0  # 0: keep the stored size.
    resize_width: int = 0
    crop_size: int = 112
    random_flip: bool = True
    normalization: str = "imagenet"
    batch_size: int = 3
    shuffle_buffer: int = 64
    max_caption_words: int = 100
    vocab_file: str = ""  # "": <data_dir>/vocab.json
    seed: int = 0

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
        return (self.num_frames - self.clip_length) // self.clip_stride + 1

    def validate(self):
        if self.num_frames < self.clip_length:
            raise ValueError(f"num_frames={self.num_frames} < clip_length={self.clip_length}")
        if self.frame_step < 1.0:
            raise ValueError(f"frame_step={self.frame_step} must be >= 1")
        if self.window_length < self.frames_spanned:
            raise ValueError(f"sample_length={self.sample_length} is shorter than the "
                             f"{self.frames_spanned} frames that num_frames={self.num_frames} "
                             f"at frame_step={self.frame_step} span")
        if self.clip_stride <= 0 or self.clip_length <= 0:
            raise ValueError(f"clip_length={self.clip_length} and clip_stride={self.clip_stride} "
                             "must be positive")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction={self.val_fraction} must be in [0, 1)")
        if self.temporal_sampling not in TEMPORAL_SAMPLINGS:
            raise ValueError(f"temporal_sampling={self.temporal_sampling!r}; "
                             f"expected one of {TEMPORAL_SAMPLINGS}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization={self.normalization!r}; "
                             f"expected one of {sorted(NORMALIZATIONS)}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size={self.batch_size} must be positive")
        if self.temporal_jitter < 0 or self.random_end_k < 1:
            raise ValueError(f"temporal_jitter={self.temporal_jitter} must be >= 0 and "
                             f"random_end_k={self.random_end_k} >= 1")
        return self


AGGREGATIONS = ("average", "weight_decider", "lstm_encoder", "lstm")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What model to build (`aqa_tf.models.aqa_model.build_aqa_model`)."""

    backbone: str = "c3d"
    width_multiplier: float = 1.0
    backbone_batch_norm: bool = False
    backbone_fc6: int = 0  # C3D: include fc6 (4096) in the backbone (paper 003's C3D-LSTM).
    lstm_units: int = 256  # `lstm` / `lstm_encoder` aggregations.
    aggregation: str = "average"
    heads: Tuple[str, ...] = ("score", "dive")
    projection_units: Tuple[int, ...] = ()  # Paper 002: per-clip FC 256-128 (or 512-256-128).
    fc_units: int = 4096  # 0: no fc6 (paper 002 regresses from the aggregated feature).
    dropout: float = 0.5
    num_classes: Tuple[Tuple[str, int], ...] = tuple(features.MTL_AQA_NUM_CLASSES.items())
    score_std: float = 17.0  # MTL-AQA: scores are divided by 17 for training.
    multiply_difficulty: bool = False  # Paper 002: score = difficulty x predicted execution.
    # Caption head (S2VT, paper 001; variants of paper 000).
    vocab_size: int = 0  # words of vocab.json (MTL-AQA: 5781); needed by the caption head.
    caption_cell: str = "gru"
    caption_layers: int = 2
    caption_hidden: int = 512
    caption_embedding: int = 512
    caption_dropout: float = 0.5  # authors' settings (the paper's text: 0.2).
    caption_attention: bool = False

    @property
    def class_counts(self) -> Dict[str, int]:
        return dict(self.num_classes)

    def validate(self):
        unknown = set(self.heads) - {"score", "dive", "caption"}
        if unknown:
            raise ValueError(f"heads={self.heads}: unknown head(s) {sorted(unknown)}; "
                             "expected a subset of ('score', 'dive', 'caption')")
        if "score" not in self.heads:
            raise ValueError(f"heads={self.heads}: the score head is required")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation={self.aggregation!r}; expected one of {AGGREGATIONS}")
        if self.width_multiplier <= 0:
            raise ValueError(f"width_multiplier={self.width_multiplier} must be positive")
        if self.fc_units < 0 or any(u <= 0 for u in self.projection_units):
            raise ValueError(f"fc_units={self.fc_units}, projection_units="
                             f"{self.projection_units}: widths must be positive (fc_units 0: "
                             "no fc6)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")
        if "caption" in self.heads:
            if self.vocab_size < 3:
                raise ValueError(f"the caption head needs the vocabulary: vocab_size="
                                 f"{self.vocab_size} (read from vocab.json, see --vocab_file)")
            if self.caption_cell not in ("gru", "lstm") or self.caption_layers < 1:
                raise ValueError(f"caption_cell={self.caption_cell!r} (gru or lstm), "
                                 f"caption_layers={self.caption_layers} (>= 1)")
            if not 0.0 <= self.caption_dropout < 1.0:
                raise ValueError(f"caption_dropout={self.caption_dropout} must be in [0, 1)")
        if self.score_std <= 0:
            raise ValueError(f"score_std={self.score_std} must be positive")
        for name, count in self.num_classes:
            if name not in features.CLASS_OUTPUTS or count < 2:
                raise ValueError(f"num_classes entry {name}={count}: expected one of "
                                 f"{features.CLASS_OUTPUTS} with at least 2 classes")
        return self


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train."""

    model_dir: str = ""
    epochs: int = 100
    learning_rate: float = 1e-4
    backbone_learning_rate: Optional[float] = None  # None: same as learning_rate.
    lr_schedule: str = "constant"  # paper 001: constant; "cosine": decay to 0 over the run.
    score_loss_weight: float = 1.0   # alpha
    class_loss_weight: float = 1.0   # beta
    caption_loss_weight: float = 0.01  # gamma
    caption_decoding: str = "greedy"  # how evaluation writes captions: greedy or beam
    caption_beam_size: int = 3
    distribution: str = "default"
    mixed_precision: str = "none"
    jit_compile: bool = False
    export_dtype: str = "float32"  # "float32" or "training" (the training dtype policy).
    init_weights: str = ""  # Keras weights of the backbone (python -m aqa_tf.weights.convert).
    freeze_backbone: bool = False  # Paper 003 (C3D-LSTM) keeps the pretrained C3D fixed.
    seed: int = 0
    select_on: str = "spearman"  # Best-checkpoint criterion on the validation split.
    test_every_epoch: bool = True  # Report test metrics each epoch (never used to choose).
    steps_per_epoch: int = 0  # 0: one pass over the training split.
    backup_every_steps: int = 0  # 0: only at epoch ends.

    def validate(self):
        if self.epochs <= 0:
            raise ValueError(f"epochs={self.epochs} must be positive")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate={self.learning_rate} must be positive")
        if self.export_dtype not in ("float32", "training"):
            raise ValueError(f"export_dtype={self.export_dtype!r}; expected float32 or training")
        if self.select_on not in ("spearman", "spearman_accuracy"):
            raise ValueError(f"select_on={self.select_on!r}; expected spearman or "
                             "spearman_accuracy")
        if self.caption_decoding not in ("greedy", "beam") or self.caption_beam_size < 1:
            raise ValueError(f"caption_decoding={self.caption_decoding!r} (greedy or beam), "
                             f"caption_beam_size={self.caption_beam_size} (>= 1)")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule={self.lr_schedule!r}; expected constant or cosine")
        if self.distribution not in ("default", "mirrored", "multi_worker"):
            raise ValueError(f"distribution={self.distribution!r}; expected default, mirrored "
                             "or multi_worker")
        if self.mixed_precision not in ("none", "mixed_bfloat16", "mixed_float16"):
            raise ValueError(f"mixed_precision={self.mixed_precision!r}; expected none, "
                             "mixed_bfloat16 or mixed_float16")
        return self


def to_json(*configs) -> str:
    return json.dumps({type(c).__name__: dataclasses.asdict(c) for c in configs}, indent=2)
