"""``samp bench compare`` and ``samp dashboard``: thin wrappers over :mod:`samp.bench`."""
from __future__ import annotations

import sys
from pathlib import Path


def _compare(args) -> int:
    from samp.bench.gate import compare, format_movements, load_reference, regressions
    from samp.bench.observations import read_observations

    try:
        movements = compare(read_observations(args.records), load_reference(args.reference),
                            args.tolerance / 100.0)
    except (ValueError, FileNotFoundError) as error:
        print(f"samp bench compare: {error}", file=sys.stderr)
        return 2
    print(format_movements(movements, show_unchanged=args.all))
    if regressions(movements):
        return 1
    if not any(m.reference is not None and m.current is not None for m in movements) and not args.allow_empty:
        print(f"samp bench compare: nothing compared: no result of {args.records} matches {args.reference} (model, "
              f"method, keep ratio, dataset and subset must agree); --allow-empty accepts that", file=sys.stderr)
        return 1
    return 0


def _dashboard(args) -> int:
    from samp.bench.budgets import default_budget_dir, load_budgets
    from samp.bench.dashboard import read_assignments, write_dashboard
    from samp.bench.observations import read_observations

    out = args.out if args.out is not None else args.history.parent / "site"
    try:
        observations = read_observations(args.history)
        budgets_path = args.budgets if args.budgets is not None else default_budget_dir()
        budgets = load_budgets(budgets_path) if (args.budgets is not None or budgets_path.is_dir()) else None
        assignments = read_assignments(args.assignment) if args.assignment else None
        if not observations:
            raise ValueError(f"{args.history} holds no records; nothing to draw")
    except (ValueError, FileNotFoundError) as error:
        print(f"samp dashboard: {error}", file=sys.stderr)
        return 2
    page = write_dashboard(observations, out, budgets=budgets, assignments=assignments,
                           tolerance=args.tolerance / 100.0)
    print(page)
    return 0


def register(subparsers) -> None:
    bench = subparsers.add_parser("bench", help="benchmark records: the accuracy gate")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True)
    compare = bench_commands.add_parser(
        "compare", help="compare a records JSONL with a saved run or the budgets; exit 1 on a regression or when "
                        "nothing matched")
    compare.add_argument("records", type=Path, help="records JSONL of the run to judge")
    compare.add_argument("reference", type=Path,
                         help="budget TOML file or folder, records JSONL, or pytest-benchmark JSON")
    compare.add_argument("--tolerance", type=float, default=0.5,
                         help="tolerance against a saved run, in percentage points (budgets carry their own)")
    compare.add_argument("--all", action="store_true", help="also list unchanged results")
    compare.add_argument("--allow-empty", action="store_true",
                         help="exit 0 even when no result of RECORDS matches the reference (default: exit 1)")
    compare.set_defaults(func=_compare)

    dashboard = subparsers.add_parser("dashboard", help="write the static HTML dashboard of a records history")
    dashboard.add_argument("history", type=Path, help="records JSONL (every run appended)")
    dashboard.add_argument("--out", type=Path, default=None,
                           help="output folder, index.html is written there (default: site/ beside HISTORY)")
    dashboard.add_argument("--budgets", type=Path, default=None,
                           help="budget TOML file or folder for the published points (default: benchmarks/budgets)")
    dashboard.add_argument("--assignment", type=Path, default=None,
                           help='JSON {"label": [slot per input token, -1 = pruned]} to draw')
    dashboard.add_argument("--tolerance", type=float, default=0.5,
                           help="history regression tolerance, in percentage points")
    dashboard.set_defaults(func=_dashboard)
