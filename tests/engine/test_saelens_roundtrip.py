"""The SAELens export round trip: for every recipe, the exported folder loads in SAELens itself
(``SAE.load_from_disk``) as the architecture the recipe trains, and SAELens's encode and decode equal
ours on the same inputs. Needs the ``sae-lens`` test extra (installed in CI)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bundle_parts import N_F, N_M
from engine.bundle import open_bundle, write_bundle
from engine.config import SAE_RECIPE_INFO, SAE_RECIPES


def _bundle_with_recipe(parts, recipe: str, path):
    """The tiny bundle with its SAE relabelled as `recipe`'s (a threshold added where it has one)."""
    config = parts["config"].with_overrides(sae={"recipe": recipe})
    state = dict(parts["sae_state"])
    if SAE_RECIPE_INFO[recipe].architecture == "jumprelu":
        state["threshold"] = torch.rand(N_F) * 2.0
    write_bundle(path, **{**parts, "config": config, "sae_state": state})
    return path


@pytest.mark.parametrize("recipe", SAE_RECIPES)
def test_saelens_loads_the_export_with_identical_encode(parts, tmp_path, recipe):
    sae_lens = pytest.importorskip("sae_lens")          # the guard only: CI installs the extra
    from engine.interop.saelens import SAELENS_ARCHITECTURE, export_saelens

    path = _bundle_with_recipe(parts, recipe, tmp_path / "run.h5")
    with open_bundle(path) as bundle:
        ours = bundle.load_sae()
        export_saelens(bundle, tmp_path / "sl")
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path / "sl"), device="cpu")
    arch = SAE_RECIPE_INFO[recipe].architecture
    assert theirs.cfg.architecture() == SAELENS_ARCHITECTURE[arch] == json.loads(
        (tmp_path / "sl" / "cfg.json").read_text())["architecture"]
    assert ours.architecture == arch
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((64, N_M)).astype(np.float32)) * 3
    with torch.no_grad():
        f_ours, f_theirs = ours.encode(x), theirs.encode(x)
        assert torch.equal(f_ours > 0, f_theirs > 0)
        assert torch.allclose(f_ours, f_theirs, atol=1e-5)
        assert 0 < (f_ours > 0).float().mean() < 1          # the comparison is not vacuous
        assert torch.allclose(ours.decode(f_ours), theirs.decode(f_theirs), atol=1e-5)
    if arch == "jumprelu":
        assert torch.equal(theirs.threshold.detach(), ours.threshold.detach())


@pytest.mark.parametrize("recipe", SAE_RECIPES)
def test_export_then_load_sae_gives_identical_encode(parts, tmp_path, recipe):
    """Round trip without SAELens: our export read back by engine.interop.load_sae."""
    from engine.interop import load_sae
    from engine.interop.saelens import export_saelens

    path = _bundle_with_recipe(parts, recipe, tmp_path / "run.h5")
    with open_bundle(path) as bundle:
        ours = bundle.load_sae()
        export_saelens(bundle, tmp_path / "sl")
    back = load_sae(tmp_path / "sl")
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((64, N_M)).astype(np.float32)) * 3
    with torch.no_grad():
        assert torch.equal(ours.encode(x), back.encode(x))
        assert torch.equal(ours.decode(ours.encode(x)), back.decode(back.encode(x)))
    assert back.architecture == ours.architecture and back.hook_name == "blocks.0.mlp.hook_post"
