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


@pytest.mark.parametrize("name", preset_names())
def test_every_recipe_runs_from_every_preset(name):
    """A preset can name any registered recipe; each builds a valid config whose architecture is known."""
    from engine.config import SAE_ARCHITECTURES, SAE_RECIPE_INFO, SAE_RECIPES, nested_widths, recipe_setting

    for recipe in SAE_RECIPES:
        cfg = RunConfig.from_dict(json.loads(preset(name).with_overrides(sae={"recipe": recipe}).to_json()))
        assert cfg.sae.recipe == recipe and SAE_RECIPE_INFO[recipe].architecture in SAE_ARCHITECTURES
        assert set(SAE_RECIPE_INFO[recipe].params) <= set(cfg.sae.to_dict())
        assert recipe_setting(cfg.sae)
    widths = nested_widths(preset(name).sae.replace(recipe="matryoshka"))
    assert widths[-1] == preset(name).sae.d_sae and list(widths) == sorted(set(widths))


def test_matryoshka_widths_are_checked():
    from engine.config import SAEConfig, nested_widths

    assert nested_widths(SAEConfig(recipe="matryoshka", d_sae=4096)) == (256, 512, 1024, 2048, 4096)
    assert SAEConfig.from_dict({"recipe": "matryoshka", "d_sae": 64, "matryoshka_widths": [16, 64]}).matryoshka_widths == (16, 64)
    for bad in ((16, 32), (32, 16, 64), (0, 64), ("a", 64), 64):
        with pytest.raises(ConfigError):
            SAEConfig(recipe="matryoshka", d_sae=64, matryoshka_widths=bad)
    with pytest.raises(ConfigError):
        SAEConfig(recipe="jumprelu", jumprelu_bandwidth=0.0)
