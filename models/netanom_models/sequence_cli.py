"""Command line of the sequence model (called by ``python -m netanom_models``):

    train --dataset stratosphere-letters [--out DIR] [--seed 0] [--max-epochs N]
    eval  --dataset stratosphere-letters [--bundle DIR] [--reports DIR] [--families N] [--max-epochs N]
    letters-fixture [--out FILE]

``train`` writes the bundle part (``sequence.onnx``, ``sequence.json``,
``sequence-parity.tsv``) into ``--out`` (default ``models/default``) beside the flow models,
whose files it does not touch. ``letters-fixture`` rewrites the letter-encoding parity
fixture that the Rust unit test replays.
"""

from __future__ import annotations

import argparse

from .__main__ import _positive_int
from .dataset_args import user_path
from .sequence_data import DATASET

COMMANDS = ("train", "eval")
FIXTURE_COMMAND = "letters-fixture"


def handles(argv: list[str]) -> bool:
    """True for the commands this module runs (the caller then hands it argv)."""
    if argv and argv[0] == FIXTURE_COMMAND:
        return True
    if not argv or argv[0] not in COMMANDS:
        return False
    return any(a == f"--dataset={DATASET}" or (a == "--dataset" and b == DATASET) for a, b in zip(argv, argv[1:] + [""]))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m netanom_models", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the sequence (C&C beacon) model and write its bundle part")
    t.add_argument("--dataset", required=True, choices=[DATASET])
    t.add_argument("--out", type=user_path, help="bundle directory (default: models/default)")
    t.add_argument("--seed", type=int, default=0, help="random seed of the model (default 0)")
    t.add_argument("--max-epochs", type=_positive_int, help="epoch cap")
    e = sub.add_parser("eval", help="evaluate the sequence part; write reports/stratosphere-letters.md")
    e.add_argument("--dataset", required=True, choices=[DATASET])
    e.add_argument("--bundle", type=user_path, help="bundle directory (default: models/default)")
    e.add_argument("--reports", type=user_path, help="report directory (default: models/reports)")
    e.add_argument("--families", type=_positive_int, help="hold out only the N largest families")
    e.add_argument("--max-epochs", type=_positive_int, help="epoch cap of the family hold-out models")
    f = sub.add_parser(FIXTURE_COMMAND, help="rewrite models/tests/fixtures/letters_parity.tsv")
    f.add_argument("--out", type=user_path, help="file to write (default: the checked-in fixture)")
    return p


def main(argv: list[str]) -> None:
    """Runs one command; DataError propagates to the caller (one error line, exit code 2)."""
    args = parser().parse_args(argv)
    if args.command == FIXTURE_COMMAND:
        from .letters_parity import FIXTURE, write_fixture

        print(f"wrote {write_fixture(args.out or FIXTURE)}")
    elif args.command == "train":
        from .sequence_data import data_file
        from .sequence_train import train_part

        data_file()  # a missing data set fails before the heavy imports
        train_part(args.out, seed=args.seed, max_epochs=args.max_epochs)
    else:
        from .sequence_report import evaluate_part
        from .sequence_data import data_file

        data_file()
        evaluate_part(args.bundle, args.reports, families=args.families, max_epochs=args.max_epochs)
