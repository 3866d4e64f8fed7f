import re
from pathlib import Path

import pytest

from stemforge.train.config import ConfigError, TrainConfig, apply_overrides, load_config

ROOT = Path(__file__).resolve().parents[3]


def test_every_shipped_config_loads():
    configs = sorted((ROOT / "configs").glob("*.yaml"))
    assert configs, "configs/ holds no YAML files"
    for path in configs:
        config = load_config(path)
        assert config.task in ("mel_vae", "vocoder", "waveform_ae", "ldm", "midi")
        assert TrainConfig.from_dict(config.to_dict()) == config


def test_overrides_are_parsed_as_yaml_and_nested(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: midi\nrun:\n  max_steps: 5\n")
    config = load_config(
        path, ["run.max_steps=12", "optim.lr=2e-4", "dist.zero_stage=3", "model.given_stem_prob=0.5"]
    )
    assert config.run.max_steps == 12
    assert config.optim.lr == pytest.approx(2e-4)
    assert config.dist.zero_stage == 3
    assert config.model == {"given_stem_prob": 0.5}
    assert config.options().model.given_stem_prob == 0.5


def test_apply_overrides_does_not_modify_input():
    raw = {"run": {"max_steps": 1}}
    out = apply_overrides(raw, ["run.max_steps=3"])
    assert raw == {"run": {"max_steps": 1}}
    assert out["run"]["max_steps"] == 3


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("task: midi\nrun:\n  max_stpes: 5\n", [], "unknown key"),
        ("task: nope\n", [], "is not one of"),
        ("task: midi\n", ["dist.zero_stage=4"], "dist.zero_stage"),
        ("task: midi\n", ["run.batch_size=two"], "must be an integer"),
        ("task: midi\n", ["run.max_steps"], "expected KEY=VALUE"),
        ("run: {}\n", [], "missing required key task"),
        ("task: [unclosed\n", [], "not valid YAML"),
        ("task: midi\n", ["optim.decay=linear"], "optim.decay = 'linear' is not one of"),
        (
            "task: midi\nmodel:\n  given_stem_porb: 0.5\n",
            [],
            r"unknown key\(s\) model.given_stem_porb; valid keys",
        ),
        (
            "task: midi\ndata:\n  lenght: 16\n",
            [],
            r"unknown key\(s\) data.lenght; valid keys here are \['length'",
        ),
        ("task: ldm\nmodel:\n  mode: joint\n", [], "model.mode = 'joint' is not one of"),
        ("task: ldm\ndata:\n  stems: bass\n", [], "data.stems must be a list"),
        (
            "task: waveform_ae\nmodel:\n  chanels: 8\n",
            [],
            r"unknown key\(s\) model.chanels; valid keys here are the Wave",
        ),
        ("task: vocoder\nmodel:\n  discriminator:\n    period: [2]\n", [], "model.discriminator.period"),
        ("task: midi\n", ["optim.min_lr_ratio=2"], r"optim.min_lr_ratio must lie in \[0, 1\]"),
        ("task: midi\n", ["optim.decay_steps=-1"], "optim.decay_steps must be 0"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path, text, overrides, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, overrides)
    if not overrides:
        assert str(path) in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("run.keep_last", 0, "0 would delete the newest too"),
        ("run.ckpt_every", 0, "give at least 1"),
        ("optim.lr", -1e-3, "give a learning rate > 0"),
        ("optim.ema_decay", 1.5, "give a value in [0, 1]"),
    ],
)
def test_numbers_are_checked_for_configs_built_in_python(key: str, value: float, words: str) -> None:
    """``TrainConfig.from_dict`` refuses what the loop cannot run (not only the command line)."""
    section, name = key.split(".")
    raw = {"task": "midi", section: {name: value}}
    with pytest.raises(ConfigError, match=re.escape(f"{key} = {value}")) as info:
        TrainConfig.from_dict(raw, "python")
    assert words in str(info.value)
