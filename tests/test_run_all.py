"""benchmarks/run_all.py's table on fake results: every row has its command, kept rows say where they
came from, and the README block is replaced between its markers only. No benchmark runs here."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def run_all():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("run_all", BENCH / "run_all.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["run_all"] = module            # dataclasses look their module up there
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("run_all", None)
        sys.path.remove(str(BENCH))


FAKE = {
    "quick-pipeline": {"wall_s": 31.4, "stage_s": {"model": 10.0, "sae": 5.0}, "loss_recovered": 0.91,
                       "kl_recovered": 0.9, "l0": 12.0, "dead": 3, "n_features": 256,
                       "class_features": {"dna": 1, "base64": 0}},
    "quick-model": {"matmul_gflops": 80.0, "rows": [{"impl": "fused", "allocator": "glibc", "tokens_per_s": 9000.0,
                                                      "gflops": 40.0, "fraction": 0.5}]},
    "quick-sae": {"recipes": {"topk": {"per_s": 5000.0, "bound_per_s": 2000.0, "ratio": 2.5, "l0": 20.0}}},
    "quick-bundle": {"open_s": 0.02, "dash_median_ms": 3.0, "peak_rss_mb": 90.0},
    "quick-search": {"median_ms": 4.0, "p90_ms": 6.0},
    "quick-cli": {"import_torch_s": 2.2, "seconds": {"superpos --help": 0.3, "superpos info BUNDLE": 0.4,
                                                     "superpos eval BUNDLE": 0.45}},
    "quick-fuzz": {"variants": 30, "crashes": 0, "hangs": 0, "mishandled": 0, "ms_per_variant": 170.0},
    "quick-write-guard": {"cpu_ratio": 1.05, "mb": 20.0, "rounds": 2},
    "sae-vs-saelens": {"warmup": 32, "timed": 6, "recipes": {"topk": {
        "ratio": 6.0, "superpos_l0": 20.0, "saelens_l0": 20.0, "superpos_nmse": 0.1, "saelens_nmse": 0.12}}},
    "ablation": {"new_ms": 200.0, "cached_ms": 8.0, "per_position_ms": 17000.0},
    "labels": {"feature": {when: {"median_score": 0.6, "token_lists": 0.6, "language": 0.09, "code_context": 0.07,
                                  "escaped_bytes": 0.0} for when in ("before", "after")}},
    "harvest": {"ratio": 0.87, "harvest_per_s": 50000.0},
    "quick-feature-map": {"points": 2560, "first_paint_ms": 80.0, "pan_ms": 40.0, "hover_ms": 1.0},
    "lens": {"bundle": "demo", "keystroke_256_ms": 11.8, "windows_256": 256},
    "lens-paths": {"bundle": "demo", "paths": [
        {"features": 4096, "path": "dense", "analyze_ms": 30.0, "clamp_ms": 40.0, "keystroke_ms": 9.0},
        {"features": 131072, "path": "dense", "analyze_ms": 537.0, "clamp_ms": 600.0, "keystroke_ms": 73.0},
        {"features": 131072, "path": "sparse", "analyze_ms": 351.0, "clamp_ms": 400.0, "keystroke_ms": 11.0}]},
    "responsiveness": {"workload": "pipeline", "max_ms": 23.0, "p99_ms": 15.0, "median_ms": 10.0},
    "act-cache": {"stream_s": 135.5, "cache_s": 119.4, "ratio": 1.13, "read_per_s": 405000.0, "headroom": 142.0},
    "interop-harvest": {"ratio": 0.66},
    "family": {"one_pass_s": 53.7, "separate_s": 140.7, "ratio": 2.62},
}

HEADER = {"command": "python benchmarks/run_all.py --quick", "date": "2026-12-07 12:00 UTC",
          "machine": "Linux x86_64, 2 CPUs", "load_average": [3.0, 4.5], "note": "Shared CPU."}


def measured(run_all):
    by_key = {f.key: f for f in run_all.FIGURES}
    return {key: run_all.Row(by_key[key].what, by_key[key].render(raw), by_key[key].command, "this run", raw)
            for key, raw in FAKE.items()}


def test_every_figure_has_a_command_and_a_unique_key(run_all):
    keys = [f.key for f in run_all.FIGURES]
    assert len(keys) == len(set(keys))
    assert all(f.command.strip() and f.what.strip() for f in run_all.FIGURES)
    assert any(f.quick for f in run_all.FIGURES) and any(not f.quick for f in run_all.FIGURES)


def test_every_renderer_reads_its_fake_result(run_all):
    fake_of = {f.render: FAKE[f.key] for f in run_all.FIGURES if f.key in FAKE}
    for fig in run_all.FIGURES:
        if fig.render:
            assert fig.render in fake_of, f"no fake result for {fig.key}'s renderer"
            assert fig.render(fake_of[fig.render]).strip()
    rows = measured(run_all)
    assert rows["quick-fuzz"].figure.startswith("30 variants: 0 crashes, 0 hangs")
    assert "dead 3/256" in rows["quick-pipeline"].figure
    assert "both after 38 steps" in rows["sae-vs-saelens"].figure


def test_table_has_the_header_and_every_row_with_its_command(run_all):
    kept = {"figures": {"universality": {"what": "universality", "figure": "0.69 / 0.66 / 0.66",
                                         "command": "superpos family demo_family.h5", "source": "509b2ef"}}}
    rows = run_all.merge(measured(run_all), kept)
    table = run_all.render_table(rows, {**HEADER, "sources": {"509b2ef": "the dev machine"}})
    lines = table.splitlines()
    assert "2026-12-07 12:00 UTC" in lines[0] and "3.0 and 4.5" in lines[0] and "Shared CPU." in lines[0]
    body = [line for line in lines if line.startswith("| ") and not line.startswith("| what")]
    assert len(body) == len(rows) == len(FAKE) + 1
    for line in body:
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        assert len(cells) == 4 and cells[2].startswith("`") and len(cells[2]) > 2, line
    assert "| 509b2ef |" in table and "- **509b2ef**: the dev machine" in table   # kept rows say where
    assert list(rows) == [f.key for f in run_all.FIGURES if f.key in rows]    # FIGURES order


def test_a_row_without_a_command_is_refused(run_all):
    rows = {"x": run_all.Row("what", "1 s", "", "this run")}
    with pytest.raises(ValueError, match="no command"):
        run_all.render_table(rows, HEADER)


def test_readme_block_replaced_between_markers_only(run_all, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\nbefore\n{run_all.START}\nold table\n{run_all.END}\nafter\n", encoding="utf-8")
    run_all.write_readme(readme, "new table")
    assert readme.read_text(encoding="utf-8") == f"# t\nbefore\n{run_all.START}\nnew table\n{run_all.END}\nafter\n"
    (tmp_path / "plain.md").write_text("no markers\n")
    with pytest.raises(SystemExit, match="figures:start"):
        run_all.write_readme(tmp_path / "plain.md", "x")


def test_kept_figures_file_covers_the_full_set(run_all):
    kept = json.loads((BENCH / "figures-509b2ef.json").read_text())
    full = {f.key for f in run_all.FIGURES if not f.quick}
    assert full <= set(kept["figures"])
    assert all(row["command"] and row["source"] in kept["header"]["sources"] for row in kept["figures"].values())


def test_main_with_given_results_runs_nothing_and_rewrites_the_readme(run_all, tmp_path):
    """--result takes a benchmark's --json made earlier; --json's rows, kept by a later run, keep their label."""
    given = tmp_path / "guard.json"
    given.write_text(json.dumps(FAKE["quick-write-guard"]))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{run_all.START}\n{run_all.END}\n", encoding="utf-8")
    out = tmp_path / "figures.json"
    rc = run_all.main(["--only", "quick-write-guard", "--result", f"quick-write-guard={given}",
                       "--keep", str(BENCH / "figures-509b2ef.json"), "--json", str(out), "--readme", str(readme),
                       "--log", str(tmp_path / "log")])
    assert rc == 0
    text = readme.read_text(encoding="utf-8")
    assert "1.05x the CPU" in text and "| 509b2ef |" in text and text.startswith("intro\n")
    saved = json.loads(out.read_text())
    label = saved["figures"]["quick-write-guard"]["source"]
    assert label.startswith("quick-write-guard ") and label in saved["header"]["sources"]

    later = run_all.render_table(run_all.merge({}, saved), {**HEADER, "sources": saved["header"]["sources"]})
    assert f"- **{label}**:" in later and "- **509b2ef**:" in later
