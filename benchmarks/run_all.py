"""Run the benchmarks behind the README's figures and regenerate its figures table.

    python benchmarks/run_all.py --quick                 # the fast ones, tiny configurations (a few minutes)
    python benchmarks/run_all.py                         # the full set at the README's sizes (under an hour; the demo alone ~5 min)
    python benchmarks/run_all.py --quick --json out.json --keep benchmarks/figures-509b2ef.json
    python benchmarks/run_all.py --only demo,model       # some figures (keys: --list)

Every figure is one row of FIGURES: what it measures, the command that measures it (a benchmark
run as its own process, so no run warms another's caches) and how its ``--json`` output reads as
the figure. Each benchmark runs with ``--json FILE`` added; a failure or a missing demo bundle
leaves that row to ``--keep`` (or says it was not measured). The table goes between the
``<!-- figures:start -->`` and ``<!-- figures:end -->`` markers of README.md (written atomically;
``--no-readme`` leaves it alone), headed by the machine, the date and the load average, every row
with the command that produced it and where it was measured.

``--keep FILE`` merges an earlier ``--json`` output: the rows this run did not measure are taken
from it with their own source (commit, date, machine), so a quick run on a laptop keeps the full
set's figures measured elsewhere, labelled as such. ``DEMO`` in a command is the demo bundle,
``engine.paths.demo_bundle_path()``, which ``superpos-app --demo`` makes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
START, END = "<!-- figures:start -->", "<!-- figures:end -->"
DEMO = "DEMO"                      # stands for the demo bundle's path in a command
THIS_RUN = "this run"


# ------------------------------------------------------------------ how each figure reads
def _s(x: float) -> str:
    return f"{x:.2f}" if x < 10 else f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def demo_figure(r: dict) -> str:
    stages = ", ".join(f"{k} {v:.0f}" for k, v in r["stage_s"].items())
    classes = ", ".join(f"{n} {k}" for k, n in r["class_features"].items())
    return (f"{r['wall_s']:.1f} s ({stages}); loss recovered {r['loss_recovered']:.3f}, KL recovered "
            f"{r['kl_recovered']:.3f}, L0 {r['l0']:.0f}, dead {r['dead']}/{r['n_features']} "
            f"({r['dead'] / r['n_features']:.2%}); {classes} features")


def model_figure(r: dict) -> str:
    best = {}
    for row in r["rows"]:
        if row["impl"] not in best or row["tokens_per_s"] > best[row["impl"]]["tokens_per_s"]:
            best[row["impl"]] = row
    parts = [f"{row['tokens_per_s']:,.0f} tokens/s, {row['fraction']:.0%} of the matmul rate ({impl} loss)"
             for impl, row in sorted(best.items())]
    return "; ".join(parts) + f" (matmul {r['matmul_gflops']:.0f} GFLOP/s)"


def sae_figure(r: dict) -> str:
    return ", ".join(f"{_s(row['ratio'])}x the five-matmul bound ({name}, {row['per_s']:,.0f} activations/s)"
                     for name, row in r["recipes"].items())


def saelens_figure(r: dict) -> str:
    rows = ", ".join(f"{_s(row['ratio'])}x ({name}; L0 {row['superpos_l0']:.0f} vs {row['saelens_l0']:.0f}, "
                     f"NMSE {row['superpos_nmse']:.2f} vs {row['saelens_nmse']:.2f})"
                     for name, row in r["recipes"].items())
    return f"{rows}; both after {r['warmup'] + r['timed']} steps on the same batches"


def cli_figure(r: dict) -> str:
    sec = r["seconds"]
    return (f"{sec['superpos --help']:.2f} / {sec['superpos info BUNDLE']:.2f} / {sec['superpos eval BUNDLE']:.2f} s "
            f"(import torch alone: {r['import_torch_s']:.1f} s)")


def bundle_figure(r: dict) -> str:
    return f"{r['open_s']:.3f} s / {r['dash_median_ms']:.1f} ms / {r['peak_rss_mb']:.0f} MB"


def search_figure(r: dict) -> str:
    return f"{r['median_ms']:.1f} ms median (p90 {r['p90_ms']:.1f} ms)"


def fuzz_figure(r: dict) -> str:
    return (f"{r['variants']} variants: {r['crashes']} crashes, {r['hangs']} hangs, {r['mishandled']} mishandled "
            f"({r['ms_per_variant']:.0f} ms per variant)")


def harvest_figure(r: dict) -> str:
    return f"{r['ratio']:.2f} of a bare model + SAE forward ({r['harvest_per_s']:,.0f} tokens/s)"


def ablation_figure(r: dict) -> str:
    base = f"; per-position baseline {r['per_position_ms'] / 1e3:.0f} s" if r.get("per_position_ms") else ""
    return f"{r['new_ms']:.0f} ms new examples, {r['cached_ms']:.0f} ms another unit on the same examples{base}"


def labels_figure(r: dict) -> str:
    f, b = r["feature"]["after"], r["feature"]["before"]
    return (f"{f['median_score']:.3f} / {f['token_lists']:.1%} / {f['language']:.1%} / {f['code_context']:.1%} / "
            f"{f['escaped_bytes']:.1%} (the labels the bundle stores: {b['median_score']:.3f} / {b['token_lists']:.1%}"
            f" / {b['language']:.1%} / {b['code_context']:.1%} / {b['escaped_bytes']:.1%})")


def feature_map_figure(r: dict) -> str:
    return f"{r['first_paint_ms']:.0f} ms first paint of {r['points']:,} points (a pan {r['pan_ms']:.0f} ms)"


def family_figure(r: dict) -> str:
    return f"{r['one_pass_s']:.1f} vs {r['separate_s']:.1f} s ({r['ratio']:.2f}x)"


def lens_figure(r: dict) -> str:
    return f"{r['keystroke_256_ms']:.1f} ms median ({r['bundle']})"


def lens_paths_figure(r: dict) -> str:
    big = {row["path"]: row for row in r["paths"] if row["features"] == max(x["features"] for x in r["paths"])}
    return (f"analyse {big['sparse']['analyze_ms']:.0f} vs {big['dense']['analyze_ms']:.0f} ms, keystroke "
            f"{big['sparse']['keystroke_ms']:.0f} vs {big['dense']['keystroke_ms']:.0f} ms")


def responsiveness_figure(r: dict) -> str:
    return f"{r['max_ms']:.0f} ms max, {r['p99_ms']:.0f} ms p99 ({r['workload']} workload)"


def act_cache_figure(r: dict) -> str:
    return (f"{r['stream_s']:.1f} vs {r['cache_s']:.1f} s ({r['ratio']:.2f}x); memmap reads {r['read_per_s']:,.0f} "
            f"activations/s, {r['headroom']:.0f}x what the SAE consumes")


def interop_harvest_figure(r: dict) -> str:
    return f"{r['ratio']:.2f} of a bare forward"


def write_guard_figure(r: dict) -> str:
    return f"{r['cpu_ratio']:.2f}x the CPU ({r['mb']:.0f} MB, {r['rounds']} rounds)"


# ------------------------------------------------------------------ the figures
@dataclass(frozen=True)
class Figure:
    """One row of the table: ``argv`` (a benchmark, run from the repo root) gives ``render``'s input."""

    key: str
    what: str
    argv: tuple[str, ...]
    render: Callable[[dict], str] | None = None   # None: no machine-readable output; only ever kept
    quick: bool = False
    needs_demo: bool = False

    @property
    def command(self) -> str:
        return shlex.join(("python", *self.argv)) if self.argv[0].endswith(".py") else shlex.join(self.argv)


def _b(name: str, *args: str) -> tuple[str, ...]:
    return (f"benchmarks/{name}", *args)


FIGURES: tuple[Figure, ...] = (
    # --quick: tiny configurations, each seconds to a minute
    Figure("quick-pipeline", "whole `tiny` run (tokenizer, model, SAE, evaluation, statistics, bundle), cold cache",
           _b("bench_demo.py", "--preset", "tiny"), demo_figure, quick=True),
    Figure("quick-model", "model training, `tiny` preset", _b("bench_model.py", "--preset", "tiny", "--steps", "10",
           "--allocator", "glibc"), model_figure, quick=True),
    Figure("quick-sae", "SAE training (512 -> 4,096, topk), 3 steps", _b("bench_sae.py", "--recipes", "topk", "--steps",
           "3", "--rounds", "1"), sae_figure, quick=True),
    Figure("quick-bundle", "16,384-feature bundle: open / one dashboard / peak RSS",
           _b("bench_bundle.py", "--features", "16384", "--repeats", "10"), bundle_figure, quick=True),
    Figure("quick-search", "search keystroke over 16,384 features", _b("bench_search.py", "--features", "16384",
           "--rounds", "2"), search_figure, quick=True),
    Figure("quick-cli", "`superpos --help` / `info` / `eval` start (synthetic bundle)",
           _b("bench_cli_start.py", "--repeat", "3"), cli_figure, quick=True),
    Figure("quick-fuzz", "damaged and hostile bundles through `superpos info` and the app",
           _b("fuzz_open.py", "--variants", "30"), fuzz_figure, quick=True),
    Figure("quick-feature-map", "feature map first paint, 2,560 points (512 + 2,048)",
           _b("bench_feature_map.py", "--sizes", "512,2048"), feature_map_figure, quick=True),
    Figure("quick-write-guard", "bundle write through the full-disk guard vs HDF5's own driver",
           _b("bench_write_guard.py", "--mb", "20", "--rounds", "2"), write_guard_figure, quick=True),
    # the full set, at the sizes the README speaks of
    Figure("demo", "whole demo, cold token cache (tokenizer, model, SAE, evaluation, statistics, labels, bundle), "
           "with its science figures (`superpos eval DEMO --json` gives them for any bundle) and DNA / base64 / hex "
           "features", _b("bench_demo.py"), demo_figure),
    Figure("model", "model training (demo preset) against the matmul rate", _b("bench_model.py"), model_figure),
    Figure("sae", "SAE training (512 -> 4,096, topk)", _b("bench_sae.py", "--recipes", "topk"), sae_figure),
    Figure("sae-vs-saelens", "SAE training against SAELens's own trainer, same data, threads and steps "
           "(`pip install -e .[bench]`)", _b("bench_sae_vs_saelens.py"), saelens_figure, needs_demo=True),
    Figure("harvest", "harvest against a bare model + SAE forward (demo bundle)",
           _b("bench_harvest.py", "--bundle", DEMO), harvest_figure, needs_demo=True),
    Figure("bundle", "131,072-feature bundle: open / one dashboard / peak RSS", _b("bench_bundle.py"), bundle_figure),
    Figure("search", "search keystroke over 131,072 features", _b("bench_search.py"), search_figure),
    Figure("lens", "text lens, keystroke -> repaint, 256 tokens (the demo bundle, else a synthetic one of its sizes)",
           _b("bench_lens.py"), lens_figure),
    Figure("lens-paths", "text lens, TopK sparse vs dense path, 131,072 features", _b("bench_lens.py", "--paths"),
           lens_paths_figure),
    Figure("lens-hostile", "text lens, 1 MB paste and hostile text (RTL, ZWJ emoji, combining marks, NUL, lone "
           "surrogates)", ("pytest", "tests/app/test_panes_lens.py", "-k", "hostile", "-s")),
    Figure("fuzz", "damaged and hostile bundles through `superpos info` and the app",
           _b("fuzz_open.py", "--variants", "600"), fuzz_figure),
    Figure("ablation", "ablation underlines, one dashboard (demo bundle)", _b("bench_ablation.py"), ablation_figure,
           needs_demo=True),
    Figure("cli", "`superpos --help` / `info` / `eval` start (demo bundle)",
           _b("bench_cli_start.py", "--bundle", DEMO), cli_figure, needs_demo=True),
    Figure("interop-harvest", "harvest of a foreign gelu-1l-shaped model (d_model 512, d_mlp 2,048, vocab 48k, "
           "16,384 features)", _b("bench_interop_harvest.py"), interop_harvest_figure),
    Figure("family", "three SAE sizes from one pass vs three runs (tiny model, 64/128/256)",
           _b("bench_family.py", "--sizes", "64,128,256"), family_figure),
    Figure("universality", "universality across two model seeds, `demo-family` (512 / 2,048 / 4,096 L1 features)",
           ("superpos", "family", "demo_family.h5")),
    Figure("feature-map", "feature map first paint, 149,504 points", _b("bench_feature_map.py"), feature_map_figure),
    Figure("write-guard", "bundle write through the full-disk guard vs HDF5's own driver",
           _b("bench_write_guard.py"), write_guard_figure),
    Figure("labels", "offline labels of the demo's features: median held-out score / bare token lists / naming a "
           "language / a place in code / escaped bytes",
           _b("bench_labels.py"), labels_figure, needs_demo=True),
    Figure("act-cache", "3 TopK SAEs (512 -> 4,096, 100k activations each): from the model's stream vs one "
           "activation cache + 3 trainings", _b("bench_act_cache.py"), act_cache_figure),
    Figure("responsiveness", "GUI timer gap while training", _b("bench_responsiveness.py"), responsiveness_figure),
)


# ------------------------------------------------------------------ running
@dataclass
class Row:
    what: str
    figure: str
    command: str
    source: str                      # "this run", or the label of the run that measured a kept row
    raw: dict = field(default_factory=dict)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}"


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def run_figure(fig: Figure, demo: Path, log) -> tuple[dict | None, str]:
    """Run one benchmark with ``--json``; (its figures or None, a line on what happened)."""
    if fig.render is None:
        return None, "no machine-readable output: kept"
    if fig.needs_demo and not demo.exists():
        return None, f"no demo bundle at {demo} (make it with `superpos-app --demo`): kept"
    argv = [str(demo) if a == DEMO else a for a in fig.argv]
    with tempfile.TemporaryDirectory(prefix="superpos-run-all-") as tmp:
        out = Path(tmp) / "figures.json"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, *argv, "--json", str(out)], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - t0
        if not out.exists():
            return None, f"failed (exit {done.returncode}, {seconds:.0f} s; see the log): kept"
        return json.loads(out.read_text()), f"{seconds:.0f} s"


def run(figures: list[Figure], log) -> dict[str, Row]:
    from engine.paths import demo_bundle_path

    demo = demo_bundle_path()
    rows = {}
    for fig in figures:
        print(f"[{fig.key}] {fig.command}", flush=True)
        raw, note = run_figure(fig, demo, log)
        print(f"[{fig.key}] {note}", flush=True)
        if raw is not None:
            rows[fig.key] = Row(fig.what, fig.render(raw), fig.command, THIS_RUN, raw)
    return rows


# ------------------------------------------------------------------ the table
THIS_RUN = "this run"


def merge(measured: dict[str, Row], kept: dict) -> dict[str, Row]:
    """Every figure in FIGURES order: measured now, else kept from an earlier --json, else none."""
    out = {}
    for fig in FIGURES:
        if fig.key in measured:
            out[fig.key] = measured[fig.key]
        elif fig.key in kept.get("figures", {}):
            k = kept["figures"][fig.key]
            out[fig.key] = Row(k["what"], k["figure"], k["command"], k["source"], k.get("raw", {}))
    return out


def this_run_label(header: dict) -> tuple[str, str]:
    """(label, description) of this run, as a later run that keeps its rows names it."""
    load = " to ".join("?" if x is None else f"{x:.1f}" for x in header.get("load_average") or [None, None])
    note = f" {header['note']}" if header.get("note") else ""
    return header["date"], f"`{header['command']}` on {header['machine']}; load average {load}.{note}"


def render_table(rows: dict[str, Row], header: dict) -> str:
    """The markdown between the markers: a line on the run, then one row per figure with its command."""
    load = header.get("load_average") or [None, None]
    load_text = " and ".join("?" if x is None else f"{x:.1f}" for x in load)
    lines = [
        f"Generated by `{header['command']}` on {header['date']}: {header['machine']}; load average {load_text} "
        "at the start and the end of the run." + (f" {header['note']}" if header.get("note") else ""),
        "`DEMO` is the demo bundle (`engine.paths.demo_bundle_path()`, made by `superpos-app --demo`). "
        "Rows not measured by this run name the run that measured them:",
        "",
    ]
    sources = header.get("sources", {})
    for label in dict.fromkeys(row.source for row in rows.values() if row.source != THIS_RUN):
        lines.append(f"- **{label}**: {sources.get(label, 'an earlier run')}")
    lines += ["", "| what | figure | command | measured |", "|---|---|---|---|"]
    for row in rows.values():
        if not row.command:
            raise ValueError(f"the figure {row.what!r} has no command")
        cells = [row.what, row.figure, f"`{row.command}`", row.source]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    """``text`` with what lies between the figures markers replaced by ``block``."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"README.md has no {START} ... {END} block to fill")
    return text[:start + len(START)] + "\n" + block + "\n" + text[end:]


def write_readme(path: Path, block: str) -> None:
    from engine.fileio import write_bytes

    write_bytes(path, replace_block(path.read_text(encoding="utf-8"), block).encode("utf-8"), what="README.md")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only the fast figures (tiny configurations, a few minutes)")
    ap.add_argument("--only", help="comma-separated figure keys (see --list)")
    ap.add_argument("--list", action="store_true", help="print the figures and their commands, run nothing")
    ap.add_argument("--json", type=Path, metavar="FILE", help="write every row (and the run's header) here")
    ap.add_argument("--keep", type=Path, metavar="FILE", help="an earlier --json: rows not measured now come from it")
    ap.add_argument("--result", action="append", default=[], metavar="KEY=FILE",
                    help="take figure KEY from a benchmark's own --json FILE made earlier (e.g. the demo, run on its "
                         "own in the background) instead of running it; repeatable")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--no-readme", action="store_true", help="do not rewrite README.md's table")
    ap.add_argument("--note", help="a sentence for the table's header (e.g. what else the machine was doing)")
    ap.add_argument("--log", type=Path, help="the benchmarks' own output (default: a temporary file, printed at the end)")
    args = ap.parse_args(argv)
    if args.list:
        for fig in FIGURES:
            print(f"{fig.key:16} {'quick' if fig.quick else 'full ':6} {fig.command}")
        return 0
    if args.only:
        keys = set(args.only.split(","))
        unknown = keys - {f.key for f in FIGURES}
        if unknown:
            raise SystemExit(f"--only: no figure {', '.join(sorted(unknown))} (see --list)")
        chosen = [f for f in FIGURES if f.key in keys]
    else:
        chosen = [f for f in FIGURES if f.quick == args.quick]
    kept = json.loads(args.keep.read_text()) if args.keep else {}
    given = dict(item.split("=", 1) for item in args.result)
    chosen = [f for f in chosen if f.key not in given]

    shown = (["--quick"] * args.quick + ["--only", args.only] * bool(args.only)
             + [f"--result={r}" for r in args.result] + ["--keep", str(args.keep)] * bool(args.keep))
    header = {"command": shlex.join(["python", "benchmarks/run_all.py", *shown]),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": machine(), "note": args.note, "load_average": [load_average(), None]}
    log_path = args.log or Path(tempfile.mkstemp(prefix="superpos-run-all-", suffix=".log")[1])
    with open(log_path, "w") as log:
        measured = run(chosen, log)
    all_measured = len(measured) == len([f for f in chosen if f.render])
    header["load_average"][1] = load_average()
    header["sources"] = dict(kept.get("header", {}).get("sources", {}))
    by_key = {f.key: f for f in FIGURES}
    for key, file in given.items():
        fig, made = by_key[key], datetime.datetime.fromtimestamp(Path(file).stat().st_mtime, datetime.timezone.utc)
        label = f"{key} {made:%Y-%m-%d %H:%M UTC}"
        header["sources"][label] = f"`{fig.command} --json FILE` on this machine ({machine()}), finished {made:%H:%M UTC}"
        measured[key] = Row(fig.what, fig.render(json.loads(Path(file).read_text())), fig.command, label)
    rows = merge(measured, kept)
    block = render_table(rows, header)
    print(f"\n{block}\n\n(the benchmarks' output: {log_path})")
    if args.json:
        from engine.fileio import write_bytes

        label, description = this_run_label(header)
        header["sources"][label] = description
        figures = {k: {**vars(r), "source": label if r.source == THIS_RUN else r.source} for k, r in rows.items()}
        data = {"header": header, "figures": figures}
        write_bytes(args.json, (json.dumps(data, indent=2) + "\n").encode(), what="the figures")
    if not args.no_readme:
        write_readme(args.readme, block)
    return 0 if all_measured else 1


if __name__ == "__main__":
    raise SystemExit(main())
