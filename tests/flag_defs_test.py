"""Options from one source: the flags are derived from the config fields, their choices from the
registries, and a user's mistake on the command line gives one line, not a traceback."""

import dataclasses
import subprocess
import sys

import pytest
from absl import flags

from aqa_tf import config, flag_defs, registry
from tests.conftest import REPO_ROOT
from tests import helpers

REGISTRIES = (registry.BACKBONES, registry.AGGREGATIONS, registry.CHECKPOINT_SOURCES,
              registry.NORMALIZATIONS, registry.SELECTION_RULES, registry.DISTRIBUTIONS)


@pytest.fixture
def parsed_defaults():
    flag_defs.define_flags()
    flags.FLAGS.unparse_flags()
    flags.FLAGS([sys.argv[0]])
    yield flags.FLAGS
    flags.FLAGS.unparse_flags()


def test_every_option_is_a_flag_with_the_field_default_help_and_choices(parsed_defaults):
    for cls, prefix in flag_defs.TRAINING_CONFIGS:
        for field, spec in config.options_of(cls):
            flag = parsed_defaults[prefix + field.name]
            default = spec.to_flag(field.default) if spec.to_flag else field.default
            expected = [str(v) for v in default] if isinstance(default, tuple) else default
            assert flag.default == expected, field.name
            assert spec.help in flag.help, field.name
            if spec.choices is not None and not isinstance(default, tuple):
                assert sorted(flag.parser.enum_values) == sorted(spec.choice_names()), field.name


def test_configs_from_default_flags_equal_the_dataclass_defaults(parsed_defaults):
    assert flag_defs.data_config_from_flags() == config.DataConfig()
    assert flag_defs.model_config_from_flags() == config.ModelConfig()
    assert flag_defs.train_config_from_flags() == config.TrainConfig()
    assert flag_defs.eval_config_from_flags() == config.EvalConfig()
    assert flag_defs.export_config_from_flags() == config.ExportConfig()
    synthetic = flag_defs.synthetic_config_from_flags()
    assert synthetic == type(synthetic)()


def test_flag_values_reach_the_config(parsed_defaults):
    parsed_defaults.projection_units = ["256", "128"]
    parsed_defaults.num_classes = ["position=3", "twists=9"]
    parsed_defaults.backbone = "r2plus1d_34"
    model_config = flag_defs.model_config_from_flags()
    assert model_config == dataclasses.replace(
        config.ModelConfig(), projection_units=(256, 128),
        num_classes=(("position", 3), ("twists", 9)), backbone="r2plus1d_34")
    parsed_defaults.num_classes = ["position"]
    with pytest.raises(config.ConfigError, match="num_classes entry 'position'"):
        flag_defs.model_config_from_flags()


def test_a_registry_name_is_a_valid_config_value_and_an_unknown_one_is_not():
    assert config.ModelConfig(backbone="s3d", aggregation="weight_decider").validate()
    with pytest.raises(config.ConfigError, match="backbone='c4d'; expected one of .*'c3d'"):
        config.ModelConfig(backbone="c4d").validate()
    with pytest.raises(ValueError, match="unknown aggregation 'max'; known aggregations: average"):
        registry.AGGREGATIONS.get("max")


def _run(*args):
    return helpers.run_module(*args, timeout=300)


def test_helpfull_lists_every_registry_name():
    proc = _run("aqa_tf.train", "--helpfull")  # absl exits with status 1 after the help
    assert "--backbone" in proc.stdout, proc.stderr[-2000:]
    # Help lines wrap, and absl breaks a long choice list inside names (`r2plus1d` / `_50`).
    text = "".join(proc.stdout.split())
    for reg in REGISTRIES:
        for name in reg.names():
            assert name in text, (reg.kind, name)
    # Each registry is the choice list of a flag: e.g. `--backbone: <c3d|mscadc|...>`.
    for reg in REGISTRIES:
        assert "<" + "|".join(reg.names()) + ">" in text, reg.kind


# The command-line mistakes of each entry (a value outside the choices, an inconsistent
# configuration, a missing file, an unwritable folder): tests/bad_input_test.py.


# --- The command-line options of the entries ------------------------------------------------

ENTRY_MODULES = ("aqa_tf.train", "aqa_tf.evaluate", "aqa_tf.predict", "aqa_tf.export",
                 "aqa_tf.benchmark", "aqa_tf.serving_client", "aqa_tf.protocols", "aqa_tf.demo",
                 "aqa_tf.weights.convert", "aqa_tf.batch_predict")
# Options that several config classes declare on purpose, with the same default and help.
SHARED_OPTIONS = {"seed"}


def _option_classes():
    """(class, flag prefix) of every config class whose options become flags."""
    return list(flag_defs.TRAINING_CONFIGS) + [(cls, "") for cls in config.ENTRY_OPTIONS]


def test_every_config_class_of_the_config_module_is_listed():
    declared = {obj for obj in vars(config).values() if isinstance(obj, type)
                and issubclass(obj, config.Config) and obj is not config.Config}
    assert declared <= {cls for cls, _ in _option_classes()}


def test_each_option_is_declared_in_exactly_one_config_class():
    owners = {}
    for cls, prefix in _option_classes():
        for field, spec in config.options_of(cls):
            owners.setdefault(prefix + field.name, []).append((cls, field, spec))
    for name, declared in owners.items():
        if len(declared) > 1:
            assert name in SHARED_OPTIONS, (name, [cls.__name__ for cls, _, _ in declared])
            assert len({(f.default, s) for _, f, s in declared}) == 1, name


def test_no_flag_is_defined_outside_flag_defs():
    import os
    import re
    pattern = re.compile(r"\bDEFINE_?\w*\(|mark_flags?_as_required|register_validator")
    found = []
    for folder, _, files in os.walk(os.path.join(REPO_ROOT, "aqa_tf")):
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".py") and not path.endswith(os.path.join("aqa_tf", "flag_defs.py")):
                with open(path) as f:
                    found += [f"{path}:{i}" for i, line in enumerate(f, 1) if pattern.search(line)]
    assert not found


def test_importing_the_entries_defines_no_flags():
    code = ("import json, " + ", ".join(ENTRY_MODULES) +
            "; from absl import flags; print(json.dumps(sorted(flags.FLAGS)))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json
    defined = set(json.loads(proc.stdout.splitlines()[-1]))
    ours = {prefix + field.name for cls, prefix in _option_classes()
            for field, _ in config.options_of(cls)}
    assert not defined & ours


@pytest.fixture
def flag_values():
    return flags.FlagValues()


def test_an_entry_may_narrow_the_choices_or_change_the_default(flag_values):
    flag_defs.define_config_flags(
        config.ConversionOptions, flag_values=flag_values,
        overrides={"format": dict(default="keras", choices=["keras", "tflite"]),
                   "quantize": dict(default=config.QUANTIZATIONS)})
    flag_values([sys.argv[0]])
    options = flag_defs.config_from_flags(config.ConversionOptions, flag_values=flag_values)
    assert options == config.ConversionOptions(format="keras", quantize=config.QUANTIZATIONS)
    for argument, problem in (("--format=saved_model", "should be one of <keras|tflite>"),
                              ("--quantize=none,foo", "unknown foo; each value must be one of")):
        with pytest.raises(flags.IllegalFlagValueError, match=problem):
            flag_values([sys.argv[0], argument])
    with pytest.raises(ValueError, match="not a subset"):
        flag_defs.define_config_flags(config.EvaluateOptions, flag_values=flags.FlagValues(),
                                      overrides={"split": dict(choices=["train"])})


def test_optional_options_and_a_subset_of_a_class(flag_values):
    flag_defs.define_config_flags(config.ScoringOptions, flag_values=flag_values)
    flag_defs.define_config_flags(config.CheckpointOptions, flag_values=flag_values,
                                  only=["checkpoint"])
    assert "checkpoint_source" not in flag_values
    flag_values([sys.argv[0], "--checkpoint=w.h5", "--end_frame=30", "--action=gym_vault"])
    scoring = flag_defs.config_from_flags(config.ScoringOptions, flag_values=flag_values)
    assert (scoring.end_frame, scoring.end_time, scoring.action) == (30, None, "gym_vault")
    assert config.ScoringOptions().validate().action is None  # unset, though it has choices
    assert flag_defs.config_from_flags(config.CheckpointOptions, flag_values=flag_values) == \
        config.CheckpointOptions(checkpoint="w.h5")
    flag_values["end_time"].value = 2.0
    with pytest.raises(config.ConfigError, match="give --end_time or --end_frame, not both"):
        flag_defs.config_from_flags(config.ScoringOptions, flag_values=flag_values)
