"""What a task head is: the interface every head of an `AQAModel` implements.

A head owns everything about its task, in its own file: the model inputs it reads, the layers
and outputs it adds, its losses, the synthetic batch that exercises it, what it adds to an
evaluation (generated outputs, metrics, report files and rows), and what it adds to an export
(serving outputs, metadata, extra signatures). The rest of the project asks the heads of a
model (`AQAModel.heads`) instead of testing names, so a new method is one head file, one entry
in `aqa_tf.registry.HEADS` and its test.

Heads are plain Python objects, not Keras layers: the layers they create live in the model's
functional graph, so weights files keep the layout they had before heads were objects.
"""

import dataclasses
from typing import Callable, Dict, List, Optional, Tuple

import keras
import numpy as np

from aqa_tf.config import DataConfig, EvalConfig, ModelConfig, TrainConfig


@dataclasses.dataclass
class Features:
    """What the heads read, built by `AQAModel` before them.

    Attributes:
      inputs: the model's inputs so far (a head adds its own in `add_inputs`).
      clips: backbone features per clip `[batch, num_clips, dim]` (clip backbones), or the
        whole-action map reshaped per clip (spatial backbones).
      pooled: the video feature `[batch, dim]` after aggregation and fc6 (clip backbones), else
        None.
      feature_map: the whole action's feature map `[batch, T, H, W, C]` (spatial backbones such
        as MSCADC), else None.
      encode: clip backbones: a function that runs the same layers (shared weights) from
        another video input `[batch, num_clips, clip_length, crop, crop, 3]` to its pooled
        feature (an exemplar's, for heads that compare videos), else None.
      clip_maps: the feature map of every clip `[batch, num_clips, T', H', W', C]` before the
        backbone's pooling, when a head reads it (`Head.reads_clip_maps`), else None.
      encode_clips: with `clip_maps`: a function from another video input to its `(clips,
        clip_maps)` (shared weights), else None.
    """

    inputs: Dict[str, keras.KerasTensor]
    clips: keras.KerasTensor
    pooled: Optional[keras.KerasTensor] = None
    feature_map: Optional[keras.KerasTensor] = None
    encode: Optional[Callable[[keras.KerasTensor], keras.KerasTensor]] = None
    clip_maps: Optional[keras.KerasTensor] = None
    encode_clips: Optional[Callable] = None


@dataclasses.dataclass
class Predictions:
    """A model's predictions on one split: sample keys, targets and outputs by name (numpy),
    the action id of every sample (0 for single-action datasets) and the names the records give
    their action ids (AQA-7's actions, JIGSAWS' tasks; empty when the records name none)."""

    keys: List[str]
    targets: Dict[str, np.ndarray]
    outputs: Dict[str, np.ndarray]
    actions: Optional[np.ndarray] = None
    action_names: Dict[int, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ReportContext:
    """What a head may need to report on one split: the data configuration, the training score
    range (for R-l2), the split and a label of the checkpoint (plot titles)."""

    data_config: DataConfig
    score_range: Tuple[float, float]
    split: str = "test"
    checkpoint_label: str = ""


class Head:
    """Base of the task heads; every hook but `build` has a neutral default.

    Args:
      model_config, data_config: the model's configuration (a head reads its own options).
    """

    #: the head's name in `registry.HEADS` and in `--heads`
    name: str = ""
    #: model inputs that exist only to train (teacher forcing); inference models drop them
    training_inputs: Tuple[str, ...] = ()
    #: outputs that exist only to train; inference models drop them
    training_outputs: Tuple[str, ...] = ()
    #: names of the extra signatures `signatures` returns
    signature_names: Tuple[str, ...] = ()
    #: whether the head writes words (the model needs a vocabulary, `--vocab_file`)
    writes_words: bool = False
    #: options of `pipeline.build_dataset` the head's targets need (e.g. include_caption)
    dataset_options: Dict[str, bool] = {}
    #: whether the head gives the model's `score` output (a model has exactly one such head)
    predicts_score: bool = False
    #: outputs trained against a dataset target of another name: output -> target key (e.g. a
    #: score distribution trained against the score)
    target_keys: Dict[str, str] = {}
    #: outputs no loss trains (training reads no target for them)
    untrained_outputs: Tuple[str, ...] = ()
    #: inputs and outputs of the inference model only, made by `build` (a graph beside the
    #: training one, sharing its layers: e.g. CoRe's query against a bank of exemplar features)
    inference_inputs: Dict[str, keras.KerasTensor] = {}
    inference_outputs: Dict[str, keras.KerasTensor] = {}
    #: whether the inference model reads exemplars of the training split (`exemplar_features`,
    #: `exemplar_targets`), which evaluation gives it (`training.exemplar_bank`)
    compares_exemplars: bool = False
    #: string `[batch]` inputs the head adds to `serving_default` (CoRe's dive number)
    serving_inputs: Tuple[str, ...] = ()
    #: whether the head reads every clip's feature map (`Features.clip_maps`; the backbone
    #: must name its pooling, `Backbone.map_pooling`)
    reads_clip_maps: bool = False
    #: whether the backbone runs on all clips of a batch at once in training too (BatchNorm
    #: statistics over them all, `clip_encoder.TimeDistributed`'s fold_in_training)
    folds_clips: bool = False

    def __init__(self, model_config: ModelConfig, data_config: DataConfig):
        self.model_config, self.data_config = model_config, data_config

    @classmethod
    def create(cls, model_config: ModelConfig, data_config: DataConfig) -> "Head":
        """The head for these configurations (a head with variants picks one here)."""
        return cls(model_config, data_config)

    @classmethod
    def pinned_options(cls, model_config: ModelConfig, data_config: DataConfig
                       ) -> Dict[str, object]:
        """Options the head derives from the training data when they are not given (CoRe's
        groups): name -> value, written into a run's flags.txt so that its checkpoints are
        rebuilt with them whatever data is at hand later."""
        return {}

    @classmethod
    def check_config(cls, model_config: ModelConfig):
        """Raises `ConfigError` for options of the head that are invalid (`ModelConfig.check`
        calls this for every head of `--heads`)."""

    # --- the model --------------------------------------------------------------------------

    def add_inputs(self, inputs: Dict[str, keras.KerasTensor]):
        """Adds the model inputs the head reads (before any head is built)."""

    def build(self, features: Features) -> Dict[str, keras.KerasTensor]:
        """Creates the head's layers on `features`; returns its outputs by name."""
        raise NotImplementedError

    # --- training ---------------------------------------------------------------------------

    def losses(self, train_config: TrainConfig) -> Dict[str, Tuple[keras.losses.Loss, float]]:
        """Output name -> (loss, weight in the total loss)."""
        return {}

    def callbacks(self, train_config: TrainConfig) -> List:
        """Keras callbacks the head needs in training (TSA: when to stop cutting the steps at
        the annotated transitions)."""
        return []

    def synthetic_batch(self, rng: np.random.Generator, batch: int, x: Dict, y: Dict):
        """Adds random inputs and targets of the head's shapes to `x` and `y` (the probes and
        benchmarks train on such a batch)."""

    # --- evaluation -------------------------------------------------------------------------

    def generator(self, model: keras.Model, eval_config: EvalConfig
                  ) -> Optional[Callable[[object], Dict[str, object]]]:
        """A function `video -> {name: array}` of outputs generated beside the inference model
        (e.g. caption ids), or None."""
        return None

    def metrics(self, predictions: Predictions, context: ReportContext) -> Dict[str, float]:
        """The head's metrics of one split."""
        return {}

    def report(self, predictions: Predictions, metrics: Dict, files_prefix: str,
               context: ReportContext) -> Dict:
        """Writes the head's report files of one split (`<files_prefix>_*`); returns entries
        of the split's result (paths, baselines)."""
        return {}

    # --- serving ----------------------------------------------------------------------------

    def serving_outputs(self, outputs: Dict, inputs: Dict) -> Dict:
        """The outputs of `serving_default` the head gives, from the inference model's
        `outputs` (tensors, in any backend's ops)."""
        return {}

    def metadata(self) -> Dict:
        """Entries of the export metadata (`assets.extra/aqa_tf.json`)."""
        return {}

    def signatures(self, model: keras.Model, eval_config: EvalConfig) -> Dict[str, Callable]:
        """Extra signatures: name -> function of the preprocessed video `[batch, num_clips,
        clip_length, crop, crop, 3]` returning a dict of tensors. The export adds each as
        `<name>` (uint8 video) and `<name>_jpeg` (JPEG frames)."""
        return {}

    def use_vocabulary(self, vocab):
        """Heads that write words use `vocab` (a `data.captions.Vocabulary`) instead of the
        data configuration's vocabulary file."""

    def describe(self) -> str:
        """What a person reads the head's generated text under (predict's output)."""
        return self.name
