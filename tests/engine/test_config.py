"""Configs: presets load, JSON round-trips exactly, bad values get clear errors."""

from __future__ import annotations

import json

import pytest

from engine.config import ConfigError, RunConfig, preset, preset_names


@pytest.mark.parametrize("name", preset_names())
def test_presets_round_trip_through_json(name):
    cfg = preset(name)
    assert RunConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert cfg.sae.d_in == cfg.model.d_mlp


def test_demo_has_the_paper_dimensions():
    cfg = preset("demo")
    assert (cfg.model.d_model, cfg.model.d_mlp, cfg.sae.d_sae) == (128, 512, 4096)


def test_overrides_validate():
    cfg = preset("tiny").with_overrides(model={"d_mlp": 96})
    assert cfg.sae.d_in == 96  # the SAE follows the MLP width
    with pytest.raises(ConfigError, match="unknown model setting"):
        preset("tiny").with_overrides(model={"width": 3})
    with pytest.raises(ConfigError, match="unknown SAE recipe"):
        preset("tiny").with_overrides(sae={"recipe": "magic"})
    with pytest.raises(ConfigError, match="divisible"):
        preset("tiny").with_overrides(model={"d_model": 30, "n_heads": 4})
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("huge")
