"""Command-line flags, derived from the config dataclasses (`aqa_tf.config`).

Every option is declared once, as a config field (`config.option`): its flag (type, default,
help, choices) and its value in the config built by `config_from_flags` come from that field.
Entry modules (`train`, `evaluate`, `benchmark`, `weights.convert`) call `define_flags()`, build
their configs with the `*_from_flags` functions and hand them to the library, and run their
`main` through `run()`, which reports a user's mistake in one line.
"""

import os
import sys
import typing
from typing import Any, Callable, List, Optional, Type, TypeVar

from absl import app
from absl import flags

from aqa_tf import config as config_lib
from aqa_tf.config import (ConfigError, DataConfig, EvalConfig, ExportConfig, ModelConfig,
                           TrainConfig)
from aqa_tf.data import captions
from aqa_tf.data import shards
from aqa_tf.data.synthetic import SyntheticDataConfig
from aqa_tf.data.video import VideoError

FLAGS = flags.FLAGS
C = TypeVar("C")

# The configs of a training run and the prefix of their flags.
TRAINING_CONFIGS = ((DataConfig, ""), (ModelConfig, ""), (TrainConfig, ""), (EvalConfig, ""),
                    (ExportConfig, ""), (SyntheticDataConfig, "synthetic_"))


def _element_type(annotation) -> Optional[type]:
    """`Tuple[int, ...]` -> int; None for anything that is not a homogeneous tuple."""
    if typing.get_origin(annotation) is tuple:
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
    return None


def define_config_flags(cls: type, prefix: str = ""):
    """Defines a flag `<prefix><field>` for every option of the config class `cls`.

    A flag already defined with the same help (e.g. `--seed`, an option of two configs) is
    shared; one defined otherwise is an error.
    """
    hints = typing.get_type_hints(cls)
    for field, spec in config_lib.options_of(cls):
        name = prefix + field.name
        default = spec.to_flag(field.default) if spec.to_flag else field.default
        if name in FLAGS:
            if spec.help not in FLAGS[name].help or FLAGS[name].default != default:
                raise ValueError(f"flag --{name} is defined twice, differently")
            continue
        kind, choices = hints[field.name], spec.choice_names()
        if _element_type(kind) is not None or spec.to_flag:
            help_text = spec.help + (f" Choices: {', '.join(choices)}." if choices else "")
            flags.DEFINE_list(name, [str(v) for v in default], help_text)
            if choices:
                flags.register_validator(
                    name, lambda values, allowed=tuple(choices): set(values) <= set(allowed),
                    message=f"--{name}: each value must be one of {', '.join(choices)}")
        elif choices is not None:
            flags.DEFINE_enum(name, default, choices, spec.help)
        elif kind is bool:
            flags.DEFINE_boolean(name, default, spec.help)
        elif kind is int:
            flags.DEFINE_integer(name, default, spec.help)
        elif kind in (float, Optional[float]):
            flags.DEFINE_float(name, default, spec.help)
        elif kind is str:
            flags.DEFINE_string(name, default, spec.help)
        else:
            raise TypeError(f"{cls.__name__}.{field.name}: no flag type for {kind}")


def _field_value(kind, spec: config_lib.Option, value: Any, flag: str) -> Any:
    if spec.from_flag:
        return spec.from_flag(value)
    element = _element_type(kind)
    if element is None:
        return value
    try:
        return tuple(element(v) for v in value)
    except ValueError:
        raise ConfigError(f"--{flag}={','.join(value)}: expected {element.__name__} values")


def config_from_flags(cls: Type[C], prefix: str = "", **derived: Any) -> C:
    """The config `cls` with every option read from its flag (and `derived` values for fields
    that are not options), validated."""
    hints = typing.get_type_hints(cls)
    values = {field.name: _field_value(hints[field.name], spec, FLAGS[prefix + field.name].value,
                                       prefix + field.name)
              for field, spec in config_lib.options_of(cls)}
    return cls(**values, **derived).validate()


_defined = False


def define_flags():
    """Defines the flags of every training-run option (safe to call from several modules)."""
    global _defined
    if _defined:
        return
    _defined = True
    for cls, prefix in TRAINING_CONFIGS:
        define_config_flags(cls, prefix)


def data_config_from_flags() -> DataConfig:
    return config_from_flags(DataConfig)


def _vocab_size(heads, data_config: DataConfig) -> int:
    if "caption" not in heads:
        return 0
    path = data_config.vocab_path
    if not os.path.exists(path):
        raise FileNotFoundError(f"the caption head needs the vocabulary {path} (--vocab_file)")
    words = len(captions.Vocabulary.load(path))
    if FLAGS.caption_vocab_size > words:
        raise ConfigError(f"--caption_vocab_size={FLAGS.caption_vocab_size} is more than the "
                          f"{words} words of {path}")
    return FLAGS.caption_vocab_size or words


def model_config_from_flags() -> ModelConfig:
    """The model config; with a caption head, its vocabulary size is `--caption_vocab_size`, else
    read from the vocabulary file (`--vocab_file`, or `<data_dir>/vocab.json`)."""
    vocab_size = _vocab_size(FLAGS.heads, data_config_from_flags())
    return config_from_flags(ModelConfig, vocab_size=vocab_size)


def train_config_from_flags() -> TrainConfig:
    return config_from_flags(TrainConfig)


def eval_config_from_flags() -> EvalConfig:
    return config_from_flags(EvalConfig)


def export_config_from_flags() -> ExportConfig:
    return config_from_flags(ExportConfig)


def synthetic_config_from_flags() -> SyntheticDataConfig:
    return config_from_flags(SyntheticDataConfig, prefix="synthetic_")


def write_flagfile(path: str) -> str:
    """The training-run flags (not absl's own, such as --helpfull) as a flagfile that
    `--flagfile=<path>` reads back in any program that defines them."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    lines = [flag.serialize() for flag in FLAGS.get_flags_for_module(sys.modules[__name__])]
    with open(path, "w") as f:
        f.write("\n".join(line for line in lines if line) + "\n")
    return path


def define_scoring_flags():
    """The flags of the CLIs that score a video file (`aqa_tf.predict`,
    `aqa_tf.serving_client`): where the window ends, the difficulty and action the model may
    read, and the JSON output."""
    from aqa_tf import tasks
    flags.DEFINE_float("end_time", None, "The window ends at the frame shown at this time "
                       "(seconds; default: the last frame).")
    flags.DEFINE_integer("end_frame", None, "The window ends at this frame of the video "
                         "(1-based, at the video's own frame rate; default: the last frame).")
    flags.DEFINE_float("difficulty", None, "Degree of difficulty of the dive, for models that "
                       "multiply their prediction by it (--multiply_difficulty).")
    flags.DEFINE_enum("action", None, list(tasks.AQA7_ACTIONS), "What the video shows, for "
                      "multi-action models (AQA-7, paper 003), which score each action on its "
                      "own scale.")
    flags.DEFINE_string("output_json", "", "Write the results of all videos to this JSON file.")


def scoring_action(meta) -> Optional[int]:
    """The action index (1-based) that `--action` gives a multi-action model (export metadata
    `meta`), None for other models; ConfigError when the model needs it and it is missing."""
    if not meta.get("uses_action"):
        return None
    if FLAGS.action is None:
        raise ConfigError("this model scores several actions, each on its own scale: give "
                          "--action (" + ", ".join(meta.get("actions", [])) + ")")
    return list(meta["actions"]).index(FLAGS.action) + 1


def run(main: Callable[[List[str]], Any]):
    """`absl.app.run(main)`, where a user's mistake (an invalid option value, a missing file,
    unreadable data or video) ends the program with one clear message and exit status 2, not a
    traceback."""
    def guarded(argv):
        try:
            return main(argv)
        except (ConfigError, FileNotFoundError, shards.DataError, VideoError) as error:
            print(f"error: {error}", file=sys.stderr, flush=True)
            sys.exit(2)

    app.run(guarded)
