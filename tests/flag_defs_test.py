"""Options from one source: the flags are derived from the config fields, their choices from the
registries, and a user's mistake on the command line gives one line, not a traceback."""

import dataclasses
import subprocess
import sys

import pytest
from absl import flags

from aqa_tf import config, flag_defs, registry
from tests.conftest import REPO_ROOT

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
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)


def test_helpfull_lists_every_registry_name():
    proc = _run("aqa_tf.train", "--helpfull")  # absl exits with status 1 after the help
    assert "--backbone" in proc.stdout, proc.stderr[-2000:]
    for reg in REGISTRIES:
        for name in reg.names():
            assert name in proc.stdout, (reg.kind, name)
    # Each registry is the choice list of a flag: e.g. `--backbone: <c3d|mscadc|...>`.
    text = "".join(proc.stdout.split())  # help lines wrap
    for reg in REGISTRIES:
        assert "<" + "|".join(reg.names()) + ">" in text, reg.kind


def test_command_line_mistakes_give_one_line_and_a_non_zero_exit(tmp_path):
    # A value outside the choices: absl refuses it while parsing.
    proc = _run("aqa_tf.train", "--backbone=c4d")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "--backbone" in proc.stderr and "c3d" in proc.stderr
    # An inconsistent configuration: our validation, one line.
    proc = _run("aqa_tf.train", f"--model_dir={tmp_path}", "--num_frames=8", "--clip_length=16",
                "--sample_length=8")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "error: num_frames=8 < clip_length=16"
    # A missing dataset.
    proc = _run("aqa_tf.evaluate", f"--data_dir={tmp_path}", f"--checkpoint={tmp_path}/x.h5")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: checkpoint" in proc.stderr and "does not exist" in proc.stderr
