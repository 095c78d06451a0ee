"""``superpos analyze`` (a model and SAE made elsewhere -> one bundle) and ``superpos export-neuronpedia``."""

from __future__ import annotations

import argparse

from engine.cli.flags import add_device_arguments
from engine.cli.progress import ProgressPrinter, drive
from engine.events import CancelToken

__all__ = ["register", "cmd_analyze", "cmd_family", "cmd_export_neuronpedia"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "analyze", help="analyse a model and SAE from TransformerLens / SAELens / dictionary_learning / sparsify -> bundle",
        description="Evaluate (loss recovered vs zero-ablation, and by KL), harvest and label an existing one-layer "
                    "model and SAE, and write a normal result bundle. --model: a TransformerLens one-layer folder "
                    "(config.json + *final.pth or .safetensors, tokenizer.json beside it) or a bundle. --sae: a "
                    "SAELens, dictionary_learning or sparsify folder, Neel Nanda's NAME.pt (+ NAME_cfg.json), or a "
                    "bundle / SAE file.")
    p.add_argument("--model", required=True, metavar="PATH", help="the model folder or file")
    p.add_argument("--sae", required=True, metavar="PATH", help="the SAE folder or file")
    p.add_argument("--tokenizer", metavar="TOKENIZER.json", help="the model's tokenizer (default: tokenizer.json "
                                                                 "next to the model)")
    p.add_argument("--corpus", default="builtin", metavar="SPEC", help="text to analyse on (as for superpos run; "
                                                                       "default builtin)")
    p.add_argument("--tokens", type=int, default=200_000, metavar="N", help="tokens to harvest (default 200000); "
                                                                            "evaluation reads half as many")
    add_device_arguments(p, precision=False)
    p.add_argument("--out", required=True, metavar="BUNDLE.h5", help="where to write the bundle")
    p.add_argument("--resume", action="store_true", help="continue a cancelled analysis: the tokenized corpus is "
                                                         "reused (it always is, from the token cache); evaluation "
                                                         "and harvest run again")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_analyze)

    p = subparsers.add_parser("family", help="what a family bundle found (universality, splits); --rematch "
                                             "re-does its matching without retraining",
                              description="Print a family bundle's universality (median best-match correlation "
                                          "of features across the two seeds per size, against the neurons') and "
                                          "its clearest splits (a feature whose closest match is shared by "
                                          "differently labelled features of the next size; a child: best "
                                          "decoder match, cosine >= --min-cosine, live, labelled, not a "
                                          "near-identical copy, one per label — the rule the app's Splitting "
                                          "pane counts by). --rematch first "
                                          "recomputes every match (decoder cosine and activation correlation "
                                          "between sizes; activation and logit-weight correlation between the two "
                                          "seeds' dictionaries and neurons) on random contexts of the run's "
                                          "validation split and rewrites the bundle atomically; the models, "
                                          "statistics and map are kept.")
    p.add_argument("bundle", metavar="BUNDLE.h5")
    p.add_argument("--rematch", action="store_true", help="recompute the matches first (rewrites the bundle)")
    p.add_argument("--match-tokens", type=int, default=None, metavar="N",
                   help="with --rematch: tokens of the matching sample (default 65536, whole contexts at random "
                        "places)")
    p.add_argument("--min-active", type=int, default=None, metavar="N",
                   help="with --rematch: match only units active on at least N of those tokens (default 10)")
    p.add_argument("--splits", type=int, default=5, metavar="N", help="how many splits to print (default 5)")
    p.add_argument("--min-cosine", type=float, default=0.5, metavar="C",
                   help="a child's decoder cosine with its parent at least C (default 0.5)")
    p.add_argument("--about", default="", metavar="TEXT",
                   help="only splits of features whose label contains TEXT, e.g. --about Arabic")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_device_arguments(p, precision=False, default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_family)

    p = subparsers.add_parser("export-neuronpedia", help="write a bundle's features as Neuronpedia / SAE-Dashboard "
                                                         "batch JSON files",
                              description="Write every feature's dashboard in the JSON SAE-Dashboard's Neuronpedia "
                                          "runner produces: batch-N.json files of --batch-size features each.")
    p.add_argument("bundle", metavar="BUNDLE.h5")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--batch-size", type=int, default=128, metavar="N", help="features per batch file (default 128)")
    p.add_argument("--model-id", default=None, help="Neuronpedia model id (default: the bundle's model name)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_export_neuronpedia)


def cmd_analyze(args: argparse.Namespace) -> int:
    from engine.analyze import analyze_job

    cancel = CancelToken()
    out = drive(analyze_job(args.model, args.sae, args.out, corpus=args.corpus, n_tokens=args.tokens,
                            tokenizer_path=args.tokenizer, device=args.device, cancel=cancel),
                cancel, ProgressPrinter(quiet=args.quiet))
    print(f"bundle written: {out}")
    print(f"explore it with:  superpos-app {out}")
    return 0


def cmd_family(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from engine.analysis.family_report import family_report, report_lines
    from engine.bundle import open_bundle
    from engine.errors import UserError
    from engine.rematch import rematch_job

    if not args.rematch and (args.match_tokens is not None or args.min_active is not None):
        raise UserError("--match-tokens and --min-active take effect with --rematch (add it to recompute the matches)")
    with open_bundle(args.bundle) as bundle:
        if len(bundle.family or ()) < 2:
            raise UserError(f"{args.bundle} holds one dictionary, not a family: nothing to split or match. "
                            "Train a family with `superpos run --d-sae 512,2048,4096` (add --model-seeds 0,1 "
                            "for universality).")
    if args.rematch:
        cancel = CancelToken()
        drive(rematch_job(args.bundle, n_tokens=args.match_tokens, min_active=args.min_active, device=args.device,
                          cancel=cancel), cancel, ProgressPrinter(quiet=args.quiet))
        print(f"bundle rewritten: {args.bundle}")
    with open_bundle(args.bundle) as bundle:
        report = family_report(bundle, limit=args.splits, min_cosine=args.min_cosine, about=args.about)
    if args.json:
        report["splits"] = [dataclasses.asdict(s) for s in report["splits"]]
        print(json.dumps(report, indent=2, default=float))
    else:
        print("\n".join(report_lines(report)))
    return 0


def cmd_export_neuronpedia(args: argparse.Namespace) -> int:
    from engine.bundle import open_bundle
    from engine.interop.neuronpedia import export_neuronpedia_job

    cancel = CancelToken()
    with open_bundle(args.bundle) as bundle:
        files = drive(export_neuronpedia_job(bundle, args.out, batch_size=args.batch_size, model_id=args.model_id,
                                             cancel=cancel), cancel, ProgressPrinter(quiet=args.quiet))
    print(f"wrote {len(files)} batch file(s) to {args.out}")
    return 0
