"""Command-line options of the data sets given by path: ``--dataset csv`` and ``--dataset flows``.

    train --dataset csv --input FILE [--input ...] --label-column C [--normal V,...]
          [--categorical a,b] [--ignore a,b] [--test FILE ...] [--log-step none|counts] [--dedup] [--name N]
    train --dataset flows --input FLOWS.csv [--input ...] [--name N]

Relative paths are taken from the directory the command was started in: ``cargo xtask`` runs
the pipeline in models/ and passes its caller's directory in NETANOM_CALLER_DIR.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from . import DataError
from .datasets import GIVEN_KINDS, DatasetSpec, csv_spec

#: Options that only --dataset csv takes (argparse dest -> option).
CSV_ONLY = {"label_column": "--label-column", "normal": "--normal", "categorical": "--categorical",
            "ignore": "--ignore", "test": "--test", "log_step": "--log-step", "dedup": "--dedup"}


def user_path(text: str) -> Path:
    """A path from the command line, relative to the caller's directory (NETANOM_CALLER_DIR)."""
    p = Path(text).expanduser()
    base = os.environ.get("NETANOM_CALLER_DIR")
    return p if p.is_absolute() or not base else Path(base) / p


def _names(text: str) -> tuple[str, ...]:
    items = tuple(s.strip() for s in text.split(","))
    if not all(items):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return items


def add_train_arguments(t: argparse.ArgumentParser) -> None:
    g = t.add_argument_group("data sets given by path (--dataset csv or flows)")
    g.add_argument("--input", type=user_path, action="append", default=[], metavar="FILE",
                   help="training file (repeatable): a CSV with a header row (csv), or flows exported by "
                        "`netanom features` / `netanom run --flows-out` (flows)")
    g.add_argument("--name", help="the bundle's data set name (default: the first input's name for csv, "
                                  "`flows` for flows); the default --out is models/bundles/<name>")
    g.add_argument("--label-column", metavar="C", help="csv: the label column (omit it for unlabelled data: the "
                                                       "Random Forest then learns Isolation Forest pseudo-labels)")
    g.add_argument("--normal", type=_names, metavar="V,...",
                   help="csv: label values of normal rows (default: normal,normal.,BENIGN,0)")
    g.add_argument("--categorical", type=_names, default=(), metavar="a,b",
                   help="csv: columns one-hot encoded (every other input must be numeric)")
    g.add_argument("--ignore", type=_names, default=(), metavar="a,b",
                   help="csv: columns that are not inputs (identifiers, timestamps, other labels)")
    g.add_argument("--test", type=user_path, action="append", default=[], metavar="FILE",
                   help="csv: a labelled test file (repeatable; its first gives parity.csv). Without one, a "
                        "label-stratified part of the input is held out as the test split")
    g.add_argument("--log-step", choices=("none", "counts"), default="none",
                   help="csv: `counts` gives the autoencoder and Isolation Forest the signed log1p step on the "
                        "numeric columns whose maximum over the normal fit rows is above 1 (default none)")
    g.add_argument("--dedup", action="store_true", help="csv: drop exact duplicate rows of the input")


def spec_from_args(args: argparse.Namespace) -> DatasetSpec | None:
    """The csv or flows DatasetSpec the options describe; None for a built-in data set (after
    checking that no csv/flows option was given with it)."""
    given = [o for d, o in {**CSV_ONLY, "input": "--input", "name": "--name"}.items() if _set(args, d)]
    if args.dataset not in GIVEN_KINDS:
        if given:
            raise DataError(f"{', '.join(given)}: only for --dataset csv or flows ({args.dataset} is read from "
                            "the shared data sets)")
        return None
    if args.dataset == "flows":
        wrong = [o for d, o in CSV_ONLY.items() if _set(args, d)]
        if wrong:
            raise DataError(f"{', '.join(wrong)}: only for --dataset csv (flows have no labels; to train on labelled "
                            "flows, use --dataset csv with their label column and --ignore for the identity columns)")
        from .flows import flows_spec

        return flows_spec(args.input, name=args.name)
    return csv_spec(args.input, args.label_column, args.normal, args.categorical, args.ignore, args.test,
                    name=args.name, log_step=args.log_step, dedup=args.dedup)


def _set(args: argparse.Namespace, dest: str) -> bool:
    v = getattr(args, dest, None)
    return bool(v) and not (dest == "log_step" and v == "none")


def add_eval_arguments(e: argparse.ArgumentParser) -> None:
    g = e.add_argument_group("--dataset flows (see evaluate_flows.py)")
    g.add_argument("--input", type=user_path, action="append", default=[], metavar="FLOWS.csv",
                   help="the bundle's training files, in the training order (checked against the manifest's "
                        "sha256s): their held-out test part is evaluated")
    g.add_argument("--eval", action="append", default=[], metavar="LABEL=FILE",
                   help="a labelled capture to evaluate on (repeatable): LABEL is benign or attack, FILE a flow "
                        "CSV or a pcap/pcapng (turned into flows with `netanom features --pcap`)")
    g.add_argument("--eval-list", type=user_path, action="append", default=[], metavar="LIST.csv",
                   help="a CSV with columns file and label (benign/attack; other columns ignored), one capture "
                        "or flow CSV a row, paths relative to the list, like ../shared/datasets/pcaps/manifest.csv")
    g.add_argument("--netanom", type=user_path, metavar="BIN",
                   help="the netanom executable that turns pcaps into flows (default: $NETANOM_BIN, else "
                        "target/release/netanom, else target/debug/netanom)")


def check_eval_args(args: argparse.Namespace) -> None:
    """The flows options of `eval` only go with --dataset flows."""
    given = [o for d, o in {"input": "--input", "eval": "--eval", "eval_list": "--eval-list",
                            "netanom": "--netanom"}.items() if getattr(args, d, None)]
    if given and args.dataset != "flows":
        raise DataError(f"{', '.join(given)}: only for eval --dataset flows ({args.dataset} is evaluated on its "
                        "own test files)")
