"""`python -m reports build|regressions`: one-line errors and exit code 2 on bad input."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recsys_impls.errors import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m reports", allow_abbrev=False,
                description="HTML reports and regression checks from asv results")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    b = sub.add_parser("build", allow_abbrev=False, help="write the static HTML report")
    b.add_argument("--results", default=".asv/results", help="asv results_dir (default .asv/results)")
    b.add_argument("--records", default=None, help="run records folder (default: records/ beside --results)")
    b.add_argument("--profiles", default=None, help="profiles folder (default: profiles/ beside --results)")
    b.add_argument("--out", default="reports/html", help="output folder (default reports/html)")
    b.add_argument("--baseline-machine", default=None, help="hardware page baseline (default: first machine)")
    b.add_argument("--factor", type=float, default=1.1, help="history regressions: slowdown factor (default 1.1)")
    b.add_argument("--base-url", default="", help="URL the folder is served from (default: relative links)")
    b.add_argument("--asv-html", default=None,
                   help="asv publish site to copy in and link (default: html/ beside --results, if present)")
    b.add_argument("--nightly", default=None,
                   help="the nightly job's A/A history folder (default: nightly/ beside --results, if present)")
    b.add_argument("--records-only", action="store_true",
                   help="build from --records alone, without asv results (e.g. benchmarks/gpu_check.sh output)")
    r = sub.add_parser("regressions", allow_abbrev=False, help="compare two runs; exit 1 on regressions")
    r.add_argument("--base", required=True, help="commit (prefix ok) with results, or a results .json file")
    r.add_argument("--head", required=True, help="commit (prefix ok) with results, or a results .json file")
    r.add_argument("--results", default=".asv/results", help="asv results_dir (default .asv/results)")
    r.add_argument("--machine", default=None, help="machine name (needed when several have results)")
    r.add_argument("--factor", type=float, default=1.1, help="time/size factor threshold (default 1.1)")
    r.add_argument("--auc-drop", type=float, default=0.001, help="absolute AUC drop threshold (default 0.001)")
    r.add_argument("--logloss-rise", type=float, default=0.001, help="absolute logloss/NE rise (default 0.001)")
    r.add_argument("--no-stats", action="store_true", help="factor only; ignore asv's samples/CI test")
    r.add_argument("--only-changed", action="store_true", help="print only changed benchmarks")
    r.add_argument("--markdown", default=None, help="write a Markdown summary to this file")
    r.add_argument("--regressed-list", default=None, help="write the regressed benchmarks' names, one a line")
    r.add_argument("--unstable", default=None,
                   help="unstable list from `reports aa`: those benchmarks get their wider factor")
    r.add_argument("--cross-machine", action="store_true",
                   help="allow --base and --head from different machines (refused otherwise)")
    ch = sub.add_parser("changes", allow_abbrev=False,
                        help="change points over each benchmark's history (E-Divisive, Apache Otava)")
    ch.add_argument("--results", default=".asv/results", help="asv results_dir (default .asv/results)")
    ch.add_argument("--machine", default=None, help="one machine (default: every machine with results)")
    ch.add_argument("--last", type=int, default=10, help="exit 1 on a regression change point in the newest N "
                    "commits (default 10)")
    ch.add_argument("--max-pvalue", type=float, default=0.001, help="significance of a change point (default 0.001)")
    a = sub.add_parser("aa", allow_abbrev=False,
                       help="record an A/A night (two runs of one commit): false-alarm rate, canary, unstable list")
    a.add_argument("--first", required=True, help="results .json of the first run (or a commit)")
    a.add_argument("--second", required=True, help="results .json of the second run (or a commit)")
    a.add_argument("--results", default=".asv/results", help="asv results_dir (default .asv/results)")
    a.add_argument("--machine", default=None, help="machine name (needed when several have results)")
    a.add_argument("--factor", type=float, default=1.1, help="the gate's factor (default 1.1)")
    a.add_argument("--nightly", default=None, help="history folder (default: nightly/ beside --results)")
    a.add_argument("--canary", type=float, default=None,
                   help="the second run slowed the canary by this factor: exit 1 unless it is flagged")
    cf = sub.add_parser("confirm", allow_abbrev=False,
                        help="keep the regressions that every interleaved base/head pair flags; exit 1 if any")
    cf.add_argument("--pair", nargs=2, action="append", default=[], metavar=("BASE", "HEAD"),
                    help="results .json files of one base and one head re-run (repeat in measurement order)")
    cf.add_argument("--results", default=".asv/results", help="asv results_dir (default .asv/results)")
    cf.add_argument("--machine", default=None, help="machine name (needed when several have results)")
    cf.add_argument("--factor", type=float, default=1.1, help="time/size factor threshold (default 1.1)")
    cf.add_argument("--unstable", default=None, help="unstable list from `reports aa` (wider factors)")
    cf.add_argument("--markdown", default=None, help="write the confirmation summary to this file")
    c = sub.add_parser("commits", allow_abbrev=False, help="print a machine's commits with results, oldest first")
    c.add_argument("--results", default=".asv/results", help="asv results_dir (default .asv/results)")
    c.add_argument("--machine", default=None, help="machine name (needed when several have results)")
    return p


def _commits(results: str, machine: str | None) -> int:
    """Commits in asv's date order, so scripts can pick 'the previous commit' (nightly.sh)."""
    from reports.asv_results import commits_in_order, load_store
    from reports.regressions import machines_in

    store = load_store(results)
    names = machines_in(store.path)
    if machine is None and len(names) == 1:
        machine = names[0]
    if machine not in names:
        raise UsageError(f"--machine {machine}: pick one of the machines with results: {', '.join(names) or 'none'}")
    for commit in commits_in_order(store.rows, machine):
        print(commit)
    return 0


def check_machine_files(results: str) -> None:
    """asv reads a machine's results only beside its machine.json: say so, instead of "no results"."""
    root = Path(results)
    if not root.is_dir():
        return  # each command says what it needs of a missing directory
    skip = {"machine.json", "benchmarks.json"}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if not (sub / "machine.json").is_file() and any(f.name not in skip for f in sub.glob("*.json")):
            raise UsageError(f"--results {results}: {sub} holds asv results files but no machine.json, so asv "
                             "cannot read them; restore it, or write it with `asv machine --yes --machine "
                             f"{sub.name}` (python -m recsys_impls bench does this)")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        refs = [getattr(args, k) for k in ("base", "head", "first", "second") if getattr(args, k, None)]
        refs += [f for pair in getattr(args, "pair", []) for f in pair]
        if not any(Path(ref).suffix == ".json" for ref in refs):
            if not getattr(args, "records_only", False):
                check_machine_files(args.results)
        if args.cmd == "build":
            from reports.build import build

            out = build(results=args.results, records=args.records, out=args.out, profiles=args.profiles,
                        baseline_machine=args.baseline_machine, factor=args.factor,
                        records_only=args.records_only, base_url=args.base_url, asv_html=args.asv_html,
                        nightly=args.nightly)
            print(f"report written to {out / 'index.html'}")
            return 0
        if args.cmd == "changes":
            from reports.changes import run_cli as changes_cli

            return changes_cli(args.results, args.machine, args.last, args.max_pvalue)
        if args.cmd in ("aa", "confirm"):
            from reports.nightly import run_aa, run_confirm
            from reports.regressions import Thresholds

            th = Thresholds(factor=args.factor)
            if args.cmd == "aa":
                nightly = args.nightly or str(Path(args.results).parent / "nightly")
                return run_aa(args.first, args.second, args.results, args.machine, th, nightly, args.canary)
            return run_confirm(args.pair, args.results, args.machine, th, args.unstable, args.markdown)
        if args.cmd == "commits":
            return _commits(args.results, args.machine)
        from reports.regressions import Thresholds, run_cli

        th = Thresholds(factor=args.factor, auc_drop=args.auc_drop, logloss_rise=args.logloss_rise,
                        use_stats=not args.no_stats)
        return run_cli(args.base, args.head, args.results, args.machine, th, args.markdown, args.only_changed,
                       args.regressed_list, args.cross_machine, args.unstable)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
