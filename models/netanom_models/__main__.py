"""Command line: python -m netanom_models {train,eval,rf-sweep,if-sweep} --dataset nsl-kdd|kdd99|cic-ids2017;
train and eval also take --dataset csv|flows with --input FILE (see dataset_args.py).

The sequence model: train|eval --dataset stratosphere-letters, and letters-fixture (see sequence_cli)."""

from __future__ import annotations

import argparse
import sys

from . import DataError
from .architecture import DEFAULT_QUANTILE, ENSEMBLE_RULES
from .dataset_args import add_eval_arguments, add_train_arguments, check_eval_args, spec_from_args, user_path
from .datasets import GIVEN_KINDS, SPECS


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return v


def _quantile(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1, got {v}")
    return v


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m netanom_models", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train the three models and write an ONNX bundle")
    t.add_argument("--dataset", required=True, choices=sorted(SPECS) + list(GIVEN_KINDS))
    t.add_argument("--out", type=user_path, help="bundle directory (default: models/bundles/<dataset>)")
    t.add_argument("--quantile", type=_quantile, default=DEFAULT_QUANTILE,
                   help=f"threshold quantile of held-out normal scores (default {DEFAULT_QUANTILE})")
    t.add_argument("--ensemble", choices=ENSEMBLE_RULES,
                   help="ensemble rule (default: the one with the best validation F1)")
    t.add_argument("--sample", type=_positive_int, help="train on a random sample of N rows")
    t.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    t.add_argument("--max-epochs", type=_positive_int, default=None, help="autoencoder epoch cap")
    add_train_arguments(t)

    e = sub.add_parser("eval", help="evaluate a bundle on the test sets; write reports/<dataset>.md")
    e.add_argument("--dataset", required=True, choices=sorted(SPECS) + ["flows"])
    e.add_argument("--bundle", type=user_path, help="bundle directory (default: models/bundles/<dataset>)")
    e.add_argument("--reports", type=user_path, help="report directory (default: models/reports)")
    e.add_argument("--sample", type=_positive_int, help="evaluate on a random sample of N rows per test set")
    add_eval_arguments(e)

    s = sub.add_parser("rf-sweep", help="Random Forest size/speed/accuracy trade-off table")
    s.add_argument("--dataset", required=True, choices=sorted(SPECS))
    s.add_argument("--reports", type=user_path, help="report directory (default: models/reports)")

    i = sub.add_parser("if-sweep", help="Isolation Forest size/speed/accuracy trade-off table")
    i.add_argument("--dataset", required=True, choices=sorted(SPECS))
    i.add_argument("--reports", type=user_path, help="report directory (default: models/reports)")
    i.add_argument("--from-json", action="store_true",
                   help="re-apply the current choice rule to reports/<dataset>-if-sweep.json and rewrite the "
                        "report, without re-running the sweep")
    return p


def main(argv: list[str] | None = None) -> int:
    from . import sequence_cli

    argv = sys.argv[1:] if argv is None else argv
    args = None if sequence_cli.handles(argv) else parser().parse_args(argv)
    try:
        if args is None:
            sequence_cli.main(argv)
            return 0
        # Fail fast on a missing data set, before the heavy imports (torch).
        from .datasets import check_available, dataset_dir, spec

        given = spec_from_args(args) if args.command == "train" else None
        if args.command == "eval":
            check_eval_args(args)
        if given is not None:
            check_available(given)
        elif args.dataset == "flows":
            pass  # eval --dataset flows checks its own inputs
        elif not (args.command == "if-sweep" and args.from_json):  # a re-render reads only the saved JSON
            dataset_dir(spec(args.dataset))
        if args.command == "train":
            from .train import TrainConfig, train

            cfg = TrainConfig(dataset=given.name if given else args.dataset, out_dir=args.out,
                              quantile=args.quantile, ensemble=args.ensemble, sample=args.sample, seed=args.seed,
                              spec=given)
            if args.max_epochs:
                cfg.max_epochs = args.max_epochs
            train(cfg)
        elif args.command == "eval" and args.dataset == "flows":
            from .evaluate_flows import evaluate_flows_args

            evaluate_flows_args(args)
        elif args.command == "eval":
            from .evaluate import evaluate

            evaluate(args.dataset, bundle_dir=args.bundle, reports_dir=args.reports, sample=args.sample)
        elif args.command == "rf-sweep":
            from .evaluate import rf_sweep

            rf_sweep(args.dataset, reports_dir=args.reports)
        elif args.command == "if-sweep":
            if args.from_json:
                from .evaluate import rerender_if_sweep

                rerender_if_sweep(args.dataset, reports_dir=args.reports)
            else:
                from .evaluate import if_sweep

                if_sweep(args.dataset, reports_dir=args.reports)
    except DataError as e:
        print(f"netanom_models: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("netanom_models: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
