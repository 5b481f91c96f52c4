from dataclasses import replace

import pytest

from avatar.config import CompressConfig, load_config, to_toml
from avatar.errors import AvatarError


def test_resolved_settings_round_trip_through_toml(tmp_path):
    config = CompressConfig(data=str(tmp_path / "data"), budget_mb=1.5, space={"tokenizer": ["BPE", "Unigram"], "hidden_size": {"low": 16, "high": 64}})
    config = replace(config, search=replace(config.search, sample_limit=300, workers=1),
                     measure=replace(config.measure, architectures=[], country="FRA"))
    (tmp_path / "config.toml").write_text(to_toml(config))
    assert load_config(tmp_path / "config.toml") == config
    text = to_toml(CompressConfig())
    assert "# data = none  # data folder in CodeXGLUE format" in text  # none: left out, the default again on reading
    assert load_config_text(tmp_path, text) == CompressConfig()


def load_config_text(tmp_path, text: str, name: str = "c.toml") -> CompressConfig:
    (tmp_path / name).write_text(text)
    return load_config(tmp_path / name)


@pytest.mark.parametrize(
    "text,message,line",
    [
        ('task = "defect"\n\n[search]\nsamplez = 4\n', "unknown option 'search.samplez'", 4),
        ('budget_mb = "three"\n', "budget_mb must be a number, got 'three'", 1),
        ("[distill]\nepochs = 2.5\n", "distill.epochs must be an integer", 2),
        ("[measure]\narchitectures = [1]\n", "measure.architectures must be a list of str", 2),
        ("seed = 1\nsearch = 3\n", "search must be a table", 2),
        ("task = \n", "malformed TOML", 1),
    ],
)
def test_bad_options_name_file_and_line(tmp_path, text, message, line):
    with pytest.raises(AvatarError, match=message) as e:
        load_config_text(tmp_path, text)
    assert str(e.value).startswith(f"{tmp_path / 'c.toml'}:{line}: ")


@pytest.mark.parametrize(
    "text,message",
    [
        ('task = "nope"\n', "task must be one of defect, clone"),
        ("[search]\nsamples = 2\n", "at least 3 samples"),
        ('[search]\nobjective = "speed"\n', "objective must be one of latency, flops"),
        ("[distill]\nepochs = 0\n", "distill.epochs must be positive"),
        ('[measure]\narchitectures = ["gpt"]\n', "unknown 'gpt'"),
        ("[space]\nwidth = 3\n", "unknown dimension 'width'"),
        ("[search]\nlatency_architectures = 2\n", "at least 3 timed architectures"),
        ('[measure]\ncountry = "XXX"\n', "XXX"),
    ],
)
def test_invalid_values_are_refused_with_the_file(tmp_path, text, message):
    with pytest.raises(AvatarError, match=message) as e:
        load_config_text(tmp_path, text)
    assert str(e.value).startswith(str(tmp_path / "c.toml"))


def test_relative_data_path_is_the_files(tmp_path):
    (tmp_path / "sub").mkdir()
    config = load_config_text(tmp_path / "sub", 'data = "../devign"\n')
    assert config.data == str((tmp_path / "devign").resolve())
    assert load_config_text(tmp_path, 'teacher = "minilm"\n').teacher == "minilm"  # a name, not a path


def test_whole_numbers_for_float_options_are_floats(tmp_path):
    config = load_config_text(tmp_path, "budget_mb = 3\n[distill]\ntemperature = 2\nalpha = 0\n")
    assert config == replace(CompressConfig(), budget_mb=3.0, distill=replace(CompressConfig().distill, temperature=2.0, alpha=0.0))
    assert isinstance(config.distill.temperature, float) and isinstance(config.budget_mb, float)
