"""Soak the money model: the never-pay-twice state machine of tests/test_money_model.py, longer.

Prints figures; it does not pass or fail. It runs ``MoneyModel`` (random runs, SIGKILLs,
faults and untruths, strangers' jobs, recipe edits, careful adoptions against one fake
account per example) for more examples and steps than CI does, counting what the test would
fail on instead of stopping at the first: double charges, strangers' jobs stored as ours,
false losses, key leaks, ledger mismatches, and runs that exit 0 without collecting (or
mentioning) paid jobs in flight. Targets: every one of those 0.

Each step is a whole ``motionflow`` process (about 1 s), so the wall time is roughly
examples x (steps + 5) seconds on a 2-core machine.

Each soak draws new sequences (a random seed, printed: ``--seed N`` replays it);
``--ci-seed`` uses the CI test's fixed seed instead. A violation prints the steps that led to
it; ``--shrink`` stops at the first one and lets Hypothesis shrink it (slow).

Usage: python benchmarks/soak_money.py [--examples 20] [--steps 25] [--seed N | --ci-seed]
       [--shrink]
(from the repository root; MOTIONFLOW_MODEL_EXAMPLES / MOTIONFLOW_MODEL_STEPS, when set, are
the defaults of --examples / --steps)
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from hypothesis import seed as hypothesis_seed
from hypothesis.stateful import get_state_machine_test
from test_money_model import MoneyModel, model_settings

# The figures, in the order printed, and what each counts.
FIGURES = [
    ("examples", "examples (one fake account and project each)"),
    ("runs", "motionflow runs (killed ones included)"),
    ("kills", "runs killed with SIGKILL while working"),
    ("faults armed", "faults and untruths armed"),
    ("strangers' jobs", "strangers' jobs added by hand"),
    ("runs leaving submits in doubt", "runs that left a submit in doubt"),
    ("adopted (ours)", "in-doubt submits adopted by a careful user"),
    ("paid again (--resubmit-in-doubt)", "submits paid again with --resubmit-in-doubt"),
    ("paid again (--resubmit-lost)", "jobs paid again with --resubmit-lost"),
    ("lost (truly gone)", "jobs marked lost that the service had forgotten"),
    ("lost while its video was still served", "of those, lost while the video URL still served"),
    ("billed requests", "billed jobs of ours (fake.billed_by_key, at settle)"),
    ("billed keys", "distinct requests billed (Idempotency-Keys)"),
    ("paid for twice with consent", "charges no record holds, paid again by the user"),
    ("double charges", "TARGET 0: a request billed twice without consent"),
    ("adopted strangers", "TARGET 0: a stranger's job stored as ours"),
    ("false losses", "TARGET 0: marked lost while the service held the job"),
    ("key leaks", "TARGET 0: the API key in a file or an output"),
    ("quiet runs leaving jobs in flight", "TARGET 0: a run exited 0, said nothing, left jobs"),
]


def _new_seed() -> int:
    return random.SystemRandom().randrange(1, 2**32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--examples", type=int, default=int(os.environ.get("MOTIONFLOW_MODEL_EXAMPLES", "20"))
    )
    parser.add_argument(
        "--steps", type=int, default=int(os.environ.get("MOTIONFLOW_MODEL_STEPS", "25"))
    )
    parser.add_argument("--seed", type=int, help="replay a soak (default: a new random seed)")
    parser.add_argument("--ci-seed", action="store_true", help="the CI test's fixed seed")
    parser.add_argument("--shrink", action="store_true", help="stop and shrink on a violation")
    args = parser.parse_args()
    if args.examples < 1 or args.steps < 1:
        parser.error("--examples and --steps must be at least 1")
    if args.ci_seed and args.seed is not None:
        parser.error("--seed and --ci-seed exclude each other")
    chosen = None if args.ci_seed else (args.seed if args.seed is not None else _new_seed())

    print(
        f"Money model soak: {args.examples} examples of up to {args.steps} steps, "
        f"{'the CI seed' if chosen is None else f'seed {chosen}'}; "
        f"{'stops at' if args.shrink else 'counts'} violations"
    )
    MoneyModel.strict = args.shrink
    config = model_settings(args.examples, args.steps, shrink=args.shrink)
    if chosen is not None:
        config = type(config)(config, derandomize=False)
    test = get_state_machine_test(MoneyModel, settings=config)
    if chosen is not None:
        test = hypothesis_seed(chosen)(test)
    started = time.monotonic()
    crashed = ""
    try:
        test()
    except Exception as exc:  # noqa: BLE001 - a soak reports, it does not stop
        crashed = "".join(traceback.format_exception_only(exc)).strip()
    wall = time.monotonic() - started

    stats = MoneyModel.stats
    width = max(len(label) for _, label in FIGURES)
    for name, label in FIGURES:
        print(f"  {label:<{width}}  {stats[name]:6d}")
    print(f"  {'wall time':<{width}}  {wall:6.0f} s ({wall / max(stats['runs'], 1):.2f} s a run)")
    if MoneyModel.violations:
        print(f"  {len(MoneyModel.violations)} violation(s); the first ones:")
        for text in MoneyModel.violations[:5]:
            print("   - " + text.replace("\n", "\n     "))
    if MoneyModel.errors:
        print(f"  {len(MoneyModel.errors)} failed step(s) (not invariants); the first ones:")
        for text in MoneyModel.errors[:5]:
            print("   - " + text.replace("\n", "\n     "))
    if crashed:
        print(f"  the machine stopped on: {crashed[:2000]}")


if __name__ == "__main__":
    main()
