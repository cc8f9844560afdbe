"""Command-line flags, derived from the config dataclasses (`aqa_tf.config`).

Every option is declared once, as a config field (`config.option`): its flag (type, default,
help, choices) and its value in the config built by `config_from_flags` come from that field.
The training-run options are the flags of this module (`define_flags()`; `write_flagfile`
writes them); the command-line options of the entries (`config.ENTRY_OPTIONS`) are flags of the
entry that defines them. No module defines flags when imported: each entry defines its flags
from its `__main__` block, builds its configs with `config_from_flags` (or the `*_from_flags`
functions), hands them to the library, and runs its `main` through `run()`, which reports a
user's mistake in one line.
"""

import os
import sys
import typing
from typing import Any, Callable, Dict, List, Optional, Sequence, Type, TypeVar

from absl import app
from absl import flags

from aqa_tf import config as config_lib
from aqa_tf import registry
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


def _flag_default(spec: config_lib.Option, default: Any, listed: bool) -> Any:
    """The flag's form of a field default: a list of strings for a list flag."""
    default = spec.to_flag(default) if spec.to_flag else default
    return [str(v) for v in default] if listed and default is not None else default


def _caller_module() -> str:
    """The name absl gives the module that called into this one (`sys.argv[0]` for
    `__main__`), so that an entry's own flags are listed by its `--help`."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    name = frame.f_globals.get("__name__", "") if frame is not None else ""
    return sys.argv[0] if name == "__main__" else name


def _checked_override(cls: type, field, choices, override: Dict[str, Any]):
    """(default, choices) of a flag that an entry overrides; the choices must be a subset of the
    option's and the default among them."""
    unknown = set(override) - {"default", "choices"}
    if unknown:
        raise ValueError(f"{cls.__name__}.{field.name}: cannot override {sorted(unknown)}")
    default = override.get("default", field.default)
    if "choices" in override:
        if choices is None or not set(override["choices"]) <= set(choices):
            raise ValueError(f"{cls.__name__}.{field.name}: choices {override['choices']} are "
                             f"not a subset of {choices}")
        choices = list(override["choices"])
    values = default if isinstance(default, tuple) else (default,)
    if choices is not None and default is not None and not set(values) <= set(choices):
        raise ValueError(f"{cls.__name__}.{field.name}: default {default!r} not in {choices}")
    return default, choices


class _ChoiceListParser(flags.ListParser):
    """A comma-separated list (as `DEFINE_list`), each value one of `choices` (any without)."""

    def __init__(self, choices: Optional[Sequence[str]] = None):
        super().__init__()
        self.choices = tuple(choices) if choices else None

    def parse(self, argument):
        values = super().parse(argument)
        unknown = [v for v in values if self.choices and v not in self.choices]
        if unknown:
            raise ValueError(f"unknown {', '.join(unknown)}; each value must be one of "
                             f"{', '.join(self.choices)}")
        return values


def define_config_flags(cls: type, prefix: str = "", *,
                        overrides: Optional[Dict[str, Dict[str, Any]]] = None,
                        only: Optional[Sequence[str]] = None, module_name: str = "",
                        flag_values: flags.FlagValues = FLAGS):
    """Defines a flag `<prefix><field>` for every option of the config class `cls`.

    Args:
      cls: a config class (`aqa_tf.config`).
      prefix: prepended to the field names.
      overrides: field name -> {"default": ..., "choices": ...}: an entry's own default, or a
        subset of the option's choices (validated by the flag, like the option's own).
      only: define these fields alone (the others keep their defaults in `config_from_flags`).
      module_name: the module the flags belong to (`--help`, `write_flagfile`); default: the
        caller's.
      flag_values: where to define them.

    A flag already defined with the same help and default (e.g. `--seed`, an option of two
    configs) is shared; one defined otherwise is an error.
    """
    overrides, module_name = overrides or {}, module_name or _caller_module()
    hints = typing.get_type_hints(cls)
    missing = (set(overrides) | set(only or ())) - {f.name for f, _ in config_lib.options_of(cls)}
    if missing:
        raise ValueError(f"{cls.__name__} has no options {sorted(missing)}")
    for field, spec in config_lib.options_of(cls):
        if only is not None and field.name not in only:
            continue
        name, kind = prefix + field.name, hints[field.name]
        listed = _element_type(kind) is not None or spec.to_flag is not None
        default, choices = _checked_override(cls, field, spec.choice_names(),
                                             overrides.get(field.name, {}))
        default = _flag_default(spec, default, listed)
        if name in flag_values:
            defined = flag_values[name]
            if spec.help not in defined.help or defined.default != default:
                raise ValueError(f"flag --{name} is defined twice, differently")
            continue
        _define(name, kind, listed, default, choices, spec.help,
                dict(flag_values=flag_values, module_name=module_name))


def _define(name: str, kind, listed: bool, default: Any, choices: Optional[List[str]],
            help_text: str, where: Dict[str, Any]):
    """Defines one flag of the type that the field's annotation `kind` asks for."""
    if listed:
        help_text += f" Choices: {', '.join(choices)}." if choices else ""
        flags.DEFINE(_ChoiceListParser(choices), name, default, help_text,
                     serializer=flags.CsvListSerializer(","), **where)
    elif choices is not None:
        flags.DEFINE_enum(name, default, choices, help_text, **where)
    elif kind is bool:
        flags.DEFINE_boolean(name, default, help_text, **where)
    elif kind in (int, Optional[int]):
        flags.DEFINE_integer(name, default, help_text, **where)
    elif kind in (float, Optional[float]):
        flags.DEFINE_float(name, default, help_text, **where)
    elif kind in (str, Optional[str]):
        flags.DEFINE_string(name, default, help_text, **where)
    else:
        raise TypeError(f"--{name}: no flag type for {kind}")


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


def config_from_flags(cls: Type[C], prefix: str = "", *, flag_values: flags.FlagValues = FLAGS,
                      **derived: Any) -> C:
    """The config `cls` with every option read from its flag (and `derived` values for fields
    that are not options), validated. An option whose flag is not defined (see
    `define_config_flags(only=...)`) keeps its default."""
    hints = typing.get_type_hints(cls)
    values = {field.name: _field_value(hints[field.name], spec,
                                       flag_values[prefix + field.name].value,
                                       prefix + field.name)
              for field, spec in config_lib.options_of(cls) if prefix + field.name in flag_values}
    return cls(**values, **derived).validate()


_defined = False


def writable_folder(path: str, flag: str) -> str:
    """Makes the folder `path` if needed and checks that files can be written in it, so that a
    command refuses it before its work is done rather than after (ConfigError, naming
    `flag`)."""
    import tempfile
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_check"):
            pass
    except OSError as error:
        raise ConfigError(f"{flag}={path}: cannot write there ({error.strerror or error})"
                          ) from None
    return path


def video_arguments(argv: Sequence[str], usage: str) -> List[str]:
    """The video paths an entry was given (`argv[1:]`), checked to exist before any model or
    server is touched, so that a typo fails at once. `usage`: the command line to show when
    there are none."""
    videos = list(argv[1:])
    if not videos:
        raise ConfigError(f"no video given: {usage}")
    for path in videos:
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file")
    return videos


def define_flags():
    """Defines the flags of every training-run option (safe to call from several modules)."""
    global _defined
    if _defined:
        return
    _defined = True
    for cls, prefix in TRAINING_CONFIGS:  # flags of this module: what write_flagfile writes
        define_config_flags(cls, prefix, module_name=__name__)


def data_config_from_flags() -> DataConfig:
    return config_from_flags(DataConfig)


def _vocab_size(heads, data_config: DataConfig) -> int:
    if not any(registry.HEADS.get(name, "heads").writes_words for name in heads):
        return 0
    path = data_config.vocab_path
    if not os.path.exists(path):
        raise FileNotFoundError(f"the heads {', '.join(heads)} need the vocabulary {path} "
                                "(--vocab_file)")
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


def check_model_flags() -> None:
    """Refuses a mistake in the model's options (a ConfigError naming it) before a command
    writes or generates anything: the model config of the flags, validated with a stand-in for
    the vocabulary size, which `model_config_from_flags` reads from a vocabulary that may only
    exist once the data is generated."""
    config_from_flags(ModelConfig, vocab_size=max(FLAGS.caption_vocab_size, 3))


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


def pin_flags(values: Dict[str, Any]):
    """Sets flags to config values (tuples become lists of strings), e.g. options a run
    derived from its data, before `write_flagfile` records them."""
    for name, value in values.items():
        FLAGS[name].value = ([str(v) for v in value] if isinstance(value, (tuple, list))
                             else value)


def scoring_action(meta, action: Optional[str]) -> Optional[int]:
    """The action index (1-based) that `--action` (`action`) gives a multi-action model (export
    metadata `meta`), None for other models; ConfigError when the model needs it and it is
    missing."""
    if not meta.get("uses_action"):
        return None
    if action is None:
        raise ConfigError("this model scores several actions, each on its own scale: give "
                          "--action (" + ", ".join(meta.get("actions", [])) + ")")
    return list(meta["actions"]).index(action) + 1


def _parse_flags(argv: List[str]) -> List[str]:
    """`FLAGS(argv)`, where an invalid command line (an unknown flag, a value outside a flag's
    choices or of the wrong type) ends the program with one line and exit status 2, as `run`
    ends it for an invalid option value."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        print("error: " + " ".join(str(error).split()), file=sys.stderr, flush=True)
        sys.exit(2)


def run(main: Callable[[List[str]], Any]):
    """`absl.app.run(main)`, where a user's mistake (an invalid flag or option value, a missing
    file, unreadable data or video) ends the program with one clear message and exit status 2,
    not a traceback or a usage text."""
    def guarded(argv):
        try:
            return main(argv)
        except (ConfigError, FileNotFoundError, shards.DataError, VideoError) as error:
            print(f"error: {error}", file=sys.stderr, flush=True)
            sys.exit(2)

    app.run(guarded, flags_parser=_parse_flags)
