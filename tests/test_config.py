from dataclasses import replace

import pytest

from avatar.config import PRESETS, CompressConfig, load_config, resolve, to_toml
from avatar.errors import AvatarError


def test_resolved_settings_round_trip_through_toml(tmp_path):
    config = CompressConfig(data=str(tmp_path / "data"), budget_mb=1.5, space={"tokenizer": ["BPE", "Unigram"], "hidden_size": {"low": 16, "high": 64}})
    config = replace(config, search=replace(config.search, sample_limit=300, workers=1),
                     measure=replace(config.measure, architectures=[], country="FRA"))
    (tmp_path / "config.toml").write_text(to_toml(config))
    assert load_config(tmp_path / "config.toml") == config
    text = to_toml(resolve())
    assert "# data = none  # data folder in CodeXGLUE format" in text  # none: left out, the default again on reading
    assert load_config_text(tmp_path, text) == resolve()


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
        ("[search]\nseed = 3\n", "search.seed is set once for the whole run: write seed", 2),
        ("[finetune]\nepochs = 1\nmodel = 'x'\n", "finetune.model is set once for the whole run: write teacher", 3),
        ('preset = "huge"\n', "preset must be one of demo", 1),
        ("seed = 1\n\n[search]\nsamples = 99999999999999999999\n", "search.samples must be between 3 and 100,000", 4),
        ("[distill]\nalpha = 0\ntemperature = inf\n", "distill.temperature must be a finite number between", 3),
        ("budget_mb = nan\n", "budget_mb must be a finite number between", 1),
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
        ("[search]\nsamples = 2\n", "search.samples must be between 3 and"),
        ('[search]\nobjective = "speed"\n', "objective must be one of latency, flops"),
        ("[distill]\nepochs = 0\n", "distill.epochs must be between 1 and 10,000, got 0"),
        ('[measure]\narchitectures = ["gpt"]\n', "unknown 'gpt'"),
        ("[space]\nwidth = 3\n", "unknown dimension 'width'"),
        ("[search]\nlatency_architectures = 2\n", "search.latency_architectures must be between 3 and"),
        ('[measure]\ncountry = "XXX"\n', "XXX"),
        ("[finetune]\nflow_length = 64\n", "finetune: flow_length needs model_type graphcodebert"),
        ('[finetune]\nmodel_type = "gnn"\n', "model_type must be one of encoder, graphcodebert"),
        ("[finetune]\nlearning_rate = inf\n", "finetune.learning_rate must be a finite number"),
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
    assert config == replace(resolve(), budget_mb=3.0, distill=replace(resolve().distill, temperature=2.0, alpha=0.0))
    assert isinstance(config.distill.temperature, float) and isinstance(config.budget_mb, float)


def test_the_built_in_sample_takes_the_demo_preset_and_real_data_the_defaults(tmp_path):
    demo, full = resolve(), resolve(options={"data": str(tmp_path)})
    assert demo.preset == "demo" and full.preset is None
    for section, values in PRESETS["demo"].items():
        for name, value in values.items():
            assert getattr(getattr(demo, section), name) == value
            assert getattr(getattr(full, section), name) == getattr(getattr(CompressConfig(), section), name)
    assert full == replace(CompressConfig(), data=str(tmp_path))
    named = resolve(options={"data": str(tmp_path), "preset": "demo", "search": {"samples": 5}})
    assert named.search.samples == 5 and named.search.generations == PRESETS["demo"]["search"]["generations"]


def test_run_wide_settings_reach_every_stage_by_name(tmp_path):
    config = resolve(options={"seed": 7, "teacher": "some/teacher", "budget_mb": 1.5})
    assert config.finetune.seed == config.distill.seed == config.search.seed == 7
    assert config.finetune.model == "some/teacher" and config.search.budget_mb == 1.5
    again = replace(config, seed=8)  # a changed copy carries the new value; the original keeps its own
    assert again.distill.seed == 8 and config.distill.seed == 7


def test_every_stage_setting_is_an_option_of_its_section(tmp_path):
    from dataclasses import fields

    from avatar.config import OWNED, SECTIONS

    text = to_toml(resolve())
    for name, cls in SECTIONS.items():
        section = text.split(f"[{name}]\n")[1].split("\n[")[0]
        for f in fields(cls):
            if f.name not in OWNED:
                assert f"{f.name} = " in section, f"{name}.{f.name} is not written to config.toml"


def test_a_graphcodebert_teacher_is_configured_in_the_finetune_section(tmp_path):
    config = load_config_text(tmp_path, '[finetune]\nmodel_type = "graphcodebert"\nflow_length = 64\n')
    assert config.finetune.model_type == "graphcodebert"
    assert config.finetune.lengths(1) == (400, 64) and config.finetune.lengths(2) == (384, 64)


def test_every_numeric_setting_has_a_range():
    from dataclasses import fields

    from avatar.config import SECTIONS
    from avatar.settings import RANGES

    for cls in (CompressConfig, *SECTIONS.values()):
        for f in fields(cls):
            if f.type in ("int", "float", "int | None", "float | None"):
                assert f.name in RANGES, f"{cls.__name__}.{f.name} has no range in avatar.settings.RANGES"
