"""``python -m compare``: a table of an experiment's (or a sweep's) runs, Pareto-optimal ones marked.

    python -m compare [--root DIR | --tracking-uri URI] [--experiment NAME] [--sweep STUDY_OR_PARENT_RUN_ID]
                      [--format md|csv] [--plot FILE.png]

It only wires: the library is ``distilkit.tracking.compare``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compare", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".", help="paths.root_dir of the runs (its mlflow.db)")
    parser.add_argument("--tracking-uri", default=None, help="an MLflow tracking URI (default sqlite:///ROOT/mlflow.db)")
    parser.add_argument("--experiment", default="distilkit")
    parser.add_argument("--sweep", default=None, help="only the trials of this Optuna study (name) or parent run id")
    parser.add_argument("--format", choices=("md", "csv"), default="md")
    parser.add_argument("--plot", default=None, metavar="FILE.png", help="accuracy vs latency and vs size")
    args = parser.parse_args(argv)
    from distilkit.tracking.compare import load_runs, plot, table

    uri = args.tracking_uri or f"sqlite:///{Path(args.root).resolve() / 'mlflow.db'}"
    if not args.tracking_uri and not (Path(args.root) / "mlflow.db").is_file():
        print(f"error: --root: no mlflow.db in {args.root}", file=sys.stderr)
        return 2
    try:
        rows = load_runs(uri, args.experiment, args.sweep)
    except LookupError as err:
        print(f"error: --experiment: {err}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: --sweep: no finished runs{' of ' + args.sweep if args.sweep else ''} in experiment {args.experiment!r}", file=sys.stderr)
        return 2
    print(table(rows, args.format), end="")
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
