"""The fuzz suite: damaged and hostile bundles (engine.testing.fuzz) opened through the CLI
(``superpos info``) and the app (``create_window(bundle=...)``), each in child processes, so that a
segfault or a hang fails the variant instead of killing the run (tests/fuzz_runner.py).

    SUPERPOS_FUZZ_VARIANTS=2000 SUPERPOS_FUZZ_SEED=7 pytest tests/test_fuzz_open.py   # the longer mode
    python benchmarks/fuzz_open.py --variants 2000                                     # the same, with figures

Per variant: no crash, no hang; the CLI either answers (exit 0) or refuses with exactly one line
``superpos: error: ...`` (never "unexpected"); the app either opens the file or shows an error dialog
with a message, and no pane shows an "Unexpected error" (a bug, not a damaged file).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine.config import HarvestConfig
from engine.testing.fuzz import KINDS, make_variants
from engine.testing.synthetic_family import write_synthetic_family
from fuzz_runner import run_child

N_VARIANTS = int(os.environ.get("SUPERPOS_FUZZ_VARIANTS", "200"))
SEED = int(os.environ.get("SUPERPOS_FUZZ_SEED", "0"))
HC = HarvestConfig(top_k=4, n_intervals=3, per_interval=2, ctx_left=3, ctx_right=2, hist_bins=8,
                   n_logits=3, n_align=2, sample_tokens=50)


def problems(variant, cli, app) -> list[str]:
    """What is wrong with one variant's outcomes (empty: it was handled well)."""
    out = []
    for name, o in (("CLI", cli), ("app", app)):
        if o.status != "ok":
            out.append(f"{name} {o.status}: {str(o.detail)[-600:]}")
    if cli.status == "ok" and cli.detail["rc"] != 0:
        err = cli.detail["stderr"]
        if cli.detail["rc"] != 1 or err.count("\n") != 1 or not err.startswith("superpos: error: "):
            out.append(f"CLI answered rc={cli.detail['rc']} with {err[:300]!r}")
    if app.status == "ok":
        d = app.detail
        if not d["opened"] and not d["dialog"].strip():
            out.append("app refused the file without a message")
        for text in [d["dialog"], *d["faults"]]:
            if "Unexpected error" in text:
                out.append(f"app: {text[:300]}")
    return out


def fuzz(base: Path, folder: Path, n: int, seed: int):
    """Make ``n`` variants and open each through the CLI and the app (three children in parallel)."""
    variants = make_variants(base, folder, n, seed)
    items = [(v.index, str(v.path)) for v in variants]
    with ThreadPoolExecutor(3) as pool:
        cli = pool.submit(run_child, "cli", items, folder)
        halves = [pool.submit(run_child, "app", items[k::2], folder) for k in (0, 1)]
        cli_out, app_out = cli.result(), {**halves[0].result(), **halves[1].result()}
    return variants, cli_out, app_out


@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory) -> Path:
    """A family (two sizes, two seeds: every group of schema 3), so variants also hit /family,
    /dictionaries and /models."""
    path = tmp_path_factory.mktemp("fuzz-base") / "base.h5"
    write_synthetic_family(path, sizes=(96, 160), n_neurons=32, vocab_size=300, n_tokens=5000, chunk=40,
                           harvest=HC, second_seed=True)
    return path


def test_damaged_and_hostile_bundles_never_crash_hang_or_go_unexplained(fuzz_base, tmp_path):
    variants, cli, app = fuzz(fuzz_base, tmp_path, N_VARIANTS, SEED)
    assert len(variants) >= min(N_VARIANTS, 200) and {v.kind for v in variants} == set(KINDS)
    failures = []
    for v in variants:
        bad = problems(v, cli[v.index], app[v.index])
        if bad:
            failures.append(f"#{v.index} {v.kind} ({v.description}): " + "; ".join(bad))
    assert not failures, f"{len(failures)} of {len(variants)} variants mishandled:\n" + "\n".join(failures[:20])
    refused = sum(cli[v.index].detail["rc"] != 0 for v in variants)
    opened = sum(app[v.index].detail["opened"] for v in variants)
    # the suite must exercise both paths: files refused with a message, and damaged files that open
    assert refused >= len(variants) // 3 and opened >= len(variants) // 10, (refused, opened)


def test_the_runner_attributes_crashes_and_hangs_to_their_variant(tmp_path):
    """A child that dies of SIGSEGV or stops answering fails that variant only; the rest still run."""
    items = [(0, "fine"), (1, "crash"), (2, "fine"), (3, "hang"), (4, "fine")]
    out = run_child("selftest", items, tmp_path, timeout_s=5)
    assert {i: o.status for i, o in out.items()} == {0: "ok", 1: "crash", 2: "ok", 3: "hang", 4: "ok"}
    assert out[1].detail["returncode"] == -11 and out[1].detail["alone"]["status"] == "crash"
