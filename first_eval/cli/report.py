"""``first-eval report`` — rebuild a run's report, or make a run directory from a predictions table.

* ``first-eval report DIR``: rebuild ``report.md`` and ``index.html`` of a run directory from its
  files, without recomputing.
* ``first-eval report --predictions FILE --out DIR``: a run directory from predictions alone
  (metrics with CIs, reliability diagrams, paired comparisons of every pair of models on shared
  items), written to a staging directory and put in place whole; NumPy and pandas only.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from first_eval.errors import UserError

ROLES = ("in-domain", "near-ood", "far-ood", "validation")


class Scheme(str, Enum):
    width = "width"
    mass = "mass"


def _roles(values: list[str] | None) -> dict[str, str]:
    out = {}
    for text in values or []:
        dataset, sep, role = text.rpartition("=")
        if not sep or not dataset or role not in ROLES:
            raise UserError(f"--role {text!r}: expected DATASET=ROLE with ROLE one of {', '.join(ROLES)}")
        out[dataset] = role
    return out


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def report(
    run_dir: Annotated[Optional[Path], typer.Argument(
        help="A run directory written by `first-eval run` (or by --predictions) to rebuild.",
        show_default=False)] = None,
    predictions: Annotated[Optional[list[Path]], typer.Option(
        "--predictions", help="Make a run directory from this predictions table (.jsonl or .parquet) alone; "
                              "repeat to read several together.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="With --predictions: the run directory to write (replaced whole if it exists).",
        show_default=False)] = None,
    bins: Annotated[int, typer.Option("--bins", min=1, max=1000, help="Bins for ECE and the diagrams.")] = 10,
    scheme: Annotated[Scheme, typer.Option("--scheme", help="Binning: equal-width or equal-mass.")] = Scheme.width,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=1, help="Bootstrap resamples for CIs and tests.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    role: Annotated[Optional[list[str]], typer.Option(
        "--role", metavar="DATASET=ROLE",
        help=f"A dataset's role ({', '.join(ROLES)}); repeatable. Validation datasets stay out of the findings.")] = None,
    compare: Annotated[Optional[list[str]], typer.Option(
        "--compare", metavar="A,B", help="Compare only these pairs of models (repeatable; default every pair).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="The report's title (default: the file's stem).")] = None,
    renormalize: Annotated[bool, typer.Option(
        "--renormalize", help="Divide probability rows by their sum instead of rejecting sums off 1.")] = False,
) -> None:
    """Rebuild a run's report, or write a run directory and report from a predictions table.

    Examples:
      first-eval report reports/default-20261126-101500
      first-eval report --predictions preds.jsonl --out reports/my-models --role arc_easy=in-domain
      streamlit run app/main.py -- --reports reports/my-models
    """
    if not predictions:
        if run_dir is None:
            raise UserError("pass a run directory to rebuild, or --predictions FILE --out DIR")
        if out is not None:
            raise UserError("--out goes with --predictions; `first-eval report DIR` rewrites DIR's report in place")
        from first_eval.report import build_report

        md, html = build_report(run_dir)
        typer.echo(f"wrote {md} and {html}")
        return
    if run_dir is not None:
        raise UserError("pass either a run directory or --predictions FILE, not both")
    if out is None:
        raise UserError("--predictions needs --out DIR (the run directory to write)")
    pairs = []
    for text in compare or []:
        a, sep, b = text.partition(",")
        if not sep or not a or not b:
            raise UserError(f"--compare {text!r}: expected MODEL_A,MODEL_B")
        pairs.append((a, b))
    roles = _roles(role)
    import shutil

    from first_eval.report.from_predictions import write_predictions_run
    from first_eval.study.publish import publish, recover, staging_path

    target = out.resolve()
    if target.exists() and not target.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not (target / "run.json").is_file():
        raise UserError(f"{out}: exists and is not a run directory; not replacing it")
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    work = staging_path(target)
    shutil.rmtree(work, ignore_errors=True)
    try:
        info = write_predictions_run(predictions, work, bins=bins, scheme=scheme.value if isinstance(scheme, Scheme)
                                     else str(scheme), bootstrap=bootstrap, seed=seed, roles=roles, name=name,
                                     compare=pairs or None, renormalize=renormalize, shown_as=target)
        publish(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for line in info["skipped"]:
        typer.echo(f"not compared: {line}", err=True)
    typer.echo(f"wrote {out}: {_n(info['models'], 'model')}, {_n(info['datasets'], 'dataset')}, "
               f"{_n(info['comparisons'], 'paired comparison')}; open {out}/index.html or "
               f"`streamlit run app/main.py -- --reports {out}`")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
