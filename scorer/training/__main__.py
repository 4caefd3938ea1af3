"""Command line: ``python -m scorer.training train --data mohler --out .data/models``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scorer.training.data import load_jsonl_files, load_mohler
from scorer.training.embed import Encoder
from scorer.training.train import (
    DEFAULT_OUT,
    DEFAULT_REVIEW_TARGET,
    DEFAULT_TOLERANCE,
    features_from_name,
    metrics_table,
    train,
)

CACHE = Path(".data/cache/minilm-embeddings.npz")


def main(argv: list[str] | None = None) -> int:
    """Parses arguments and runs the command.

    Returns:
        The process exit code.
    """
    parser = argparse.ArgumentParser(prog="python -m scorer.training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("train", help="evaluate by grouped cross-validation, then fit and export a versioned model")
    cmd.add_argument(
        "--data", required=True, nargs="+", help='"mohler" (benchmark only) or JSONL files of graded answers, trained as one set'
    )
    cmd.add_argument("--out", type=Path, default=DEFAULT_OUT, help="models folder (default .data/models)")
    cmd.add_argument("--features", default="base", choices=["base", "peers", "graded"], help="feature families (default base)")
    cmd.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="grade tolerance of the confidence")
    cmd.add_argument("--review-target", type=float, default=DEFAULT_REVIEW_TARGET, help="agreement required of unflagged answers")
    cmd.add_argument("--graded-per-question", type=int, default=10, help="graded context size (graded features)")
    cmd.add_argument("--scale-max", type=float, default=5.0, help="top grade of a JSONL data set")
    cmd.add_argument("--seed", type=int, default=0)
    cmd.add_argument("--no-cache", action="store_true", help=f"do not read or write the embedding cache {CACHE}")
    args = parser.parse_args(argv)

    if args.data == ["mohler"]:
        data = load_mohler()
    else:
        data = load_jsonl_files([Path(p) for p in args.data], args.scale_max)
    encoder = Encoder()
    if not args.no_cache:
        encoder.load_cache(CACHE)
    config = features_from_name(args.features)
    try:
        result = train(
            data,
            config,
            out_dir=args.out,
            tolerance=args.tolerance,
            review_target=args.review_target,
            graded_per_question=args.graded_per_question,
            seed=args.seed,
            encoder=encoder,
        )
    finally:
        if not args.no_cache:
            encoder.save_cache(CACHE)
    meta = result.metadata
    print(f"\nmodel {meta['name']} {meta['version']} ({meta['model']}) -> {result.artefact}")
    print(f"review threshold {meta['review_threshold']:.3f}; ONNX vs scikit-learn max |diff| {meta['onnx_max_abs_diff_vs_sklearn']:.1e}")
    if meta["cv_metrics"]:
        print("\nleave-one-group-out cross-validation (grade units):\n")
        print(metrics_table([(config.label, meta["cv_metrics"])]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
