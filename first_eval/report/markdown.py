"""``report.md``: the study's verdicts and tables as plain Markdown (figures live in index.html).

The table builders here (``*_rows`` with their ``*_HEADER``) are shared with :mod:`.html`, so the
two reports show the same numbers. Every key of the run files beyond the v1 schema is optional:
an old run renders, with the columns it lacks shown as "n/a".
"""

from __future__ import annotations

from typing import Any

from first_eval.report.claims import VALIDATION, Claim

HEADLINE = (("accuracy", "accuracy", 3), ("ece", "ECE", 3), ("debiased_ece", "debiased ECE", 3),
            ("smooth_ece", "smooth ECE", 3), ("confidence_gap", "conf − acc", 3))
"""The headline metrics: (key, column, digits); ``confidence_gap`` is printed signed."""
OTHER = (("brier", "Brier", 3), ("nll", "NLL", 3), ("auroc", "AUROC", 3))
COMPARED = ("accuracy", "ece", "debiased_ece", "smooth_ece", "brier", "nll")
SIGNED = {"confidence_gap"}

HEADLINE_HEADER = ["model", "dataset", "role", "n", "seeds"] + [h for _, h, _ in HEADLINE]
OTHER_HEADER = ["model", "dataset", "role", "n"] + [h for _, h, _ in OTHER]
SEED_HEADER = ["model", "dataset", "seeds", "accuracy by seed", "accuracy sd", "ECE by seed", "ECE sd"]
COMPARISON_HEADER = ["difference", "dataset", "role", "metric", "value", "95% CI", "p", "p_holm", "MDE", "seeds"]
CALIBRATION_HEADER = ["model", "method", "c", "val ECE before", "val ECE after", "evaluated on", "n",
                      "ECE raw", "ECE re-shaped", "re-shaped − raw [95% CI]", "p", "MDE"]
TRAJECTORY_HEADER = ["model", "step", "dataset", "role", "selected by", "accuracy", "ECE", "debiased ECE",
                     "conf − acc"]
KNOWLEDGE_HEADER = ["model", "positions", "n", "mass@1", "mass@3", "mass@5", "mass@10", "mass@20",
                    "share mass@5 > 0.95", "KL(full‖top-5) nats"]
SELECTED = {"val-accuracy": "shipped: best val accuracy", "val-ece": "early stop: lowest val ECE",
            "last": "last checkpoint"}


def _md(text: Any) -> str:
    """Escape text for a Markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;") \
        .replace("\n", " ")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and abs(x) != float("inf")


def cell(row: dict, key: str, digits: int, *, signed: bool | None = None) -> str:
    """``0.812 [0.780, 0.840]``: a value with its ``<key>_ci`` where there is one; "n/a" when missing."""
    value = row.get(key)
    if not _finite(value):
        return "n/a"
    fmt = f"{{:+.{digits}f}}" if (key in SIGNED if signed is None else signed) else f"{{:.{digits}f}}"
    text = fmt.format(value)
    ci = row.get(f"{key}_ci")
    if ci and len(ci) == 2 and all(_finite(v) for v in ci):
        text += f" [{fmt.format(ci[0])}, {fmt.format(ci[1])}]"
    return text


def _num(value: Any, digits: int = 4, *, signed: bool = False) -> str:
    if not _finite(value):
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


ECE_CI_NOTE = ("ECE's intervals are bootstrap percentiles of a statistic biased upward: resampling adds noise "
               "that the bins read as mis-calibration, so for a well-calibrated model the interval can lie "
               "above the point estimate. Debiased ECE corrects for that bias. For a model trained with "
               "several seeds the row is the mean over its seeds and the interval comes from a two-level "
               "bootstrap (seeds, then items).")
"""Said under every headline table, so that an interval above its point estimate is not read as a bug."""


def roles_of(run) -> dict[str, str]:
    """Dataset → role: ``run.json``'s datasets, overridden by ``metrics.json``'s ``roles``."""
    return {**run.roles(), **(run.metrics.get("roles") or {})}


def _seeds_text(row: dict) -> str:
    seeds = row.get("seeds") or []
    n = row.get("n_seeds") or len(seeds) or 1
    return f"{n} ({', '.join(str(s) for s in seeds)})" if seeds else str(n)


def _with_gap(row: dict) -> dict:
    """The row with ``confidence_gap`` derived from ``mean_confidence`` where it lacks one."""
    if not _finite(row.get("confidence_gap")) and _finite(row.get("mean_confidence")) and _finite(row.get("accuracy")):
        return {**row, "confidence_gap": row["mean_confidence"] - row["accuracy"]}
    return row


def headline_rows(run, *, validation: bool = False, results: list[dict] | None = None) -> list[list[str]]:
    """One row per (model arm, dataset): the non-validation ones, or with ``validation`` only those."""
    roles = roles_of(run)
    rows = []
    for r in run.results if results is None else results:
        if (roles.get(r["dataset"]) == VALIDATION) != validation:
            continue
        r = _with_gap(r)
        rows.append([r["model"], r["dataset"], roles.get(r["dataset"], ""), str(r.get("n", "?")), _seeds_text(r)]
                    + [cell(r, key, d) for key, _, d in HEADLINE])
    return rows


def other_rows(run) -> list[list[str]]:
    roles = roles_of(run)
    return [[r["model"], r["dataset"], roles.get(r["dataset"], ""), str(r.get("n", "?"))]
            + [cell(r, key, d) for key, _, d in OTHER] for r in run.results]


def seed_rows(run) -> list[list[str]]:
    """Per arm with several seeds and dataset: each seed's accuracy and ECE, and their sd.

    From ``metrics.json``'s ``replicas`` (one row per ``arm@seed``) where present, else from the
    ``<metric>_seeds`` lists of the arm rows.
    """
    from statistics import stdev

    from first_eval.arms import arm_of, seed_of

    groups: dict[tuple[str, str], list[dict]] = {}
    for r in run.metrics.get("replicas") or []:
        groups.setdefault((arm_of(r["model"]), r["dataset"]), []).append(r)
    out = []
    if groups:
        for (arm, dataset), reps in groups.items():
            if len(reps) < 2:
                continue
            reps = sorted(reps, key=lambda r: seed_of(r["model"]) or 0)
            row = [arm, dataset, ", ".join(str(seed_of(r["model"])) for r in reps)]
            for key in ("accuracy", "ece"):
                vals = [r.get(key) for r in reps]
                row.append(", ".join(_num(v, 3) for v in vals))
                finite = [v for v in vals if _finite(v)]
                row.append(_num(stdev(finite), 4) if len(finite) > 1 else "n/a")
            out.append(row)
        return out
    for r in run.results:
        if (r.get("n_seeds") or 1) < 2:
            continue
        row = [r["model"], r["dataset"], ", ".join(str(s) for s in r.get("seeds") or [])]
        for key in ("accuracy", "ece"):
            row.append(", ".join(_num(v, 3) for v in r.get(f"{key}_seeds") or []))
            row.append(_num(r.get(f"{key}_seed_sd"), 4))
        out.append(row)
    return out


def comparison_rows(run) -> list[list[str]]:
    roles = roles_of(run)
    rows = []
    for c in run.metrics.get("comparisons", []):
        seeds = (f"{c['n_seeds_a']} vs {c['n_seeds_b']}" if c.get("n_seeds_a") is not None
                 and c.get("n_seeds_b") is not None else "")
        for metric in COMPARED:
            d = (c.get("differences") or {}).get(metric)
            if not d:
                continue
            ci = d.get("ci") or [None, None]
            rows.append([f"{c['model_a']} − {c['model_b']}", c["dataset"], roles.get(c["dataset"], ""), metric,
                         _num(d.get("difference"), signed=True),
                         f"[{_num(ci[0], signed=True)}, {_num(ci[1], signed=True)}]",
                         _num(d.get("p_value")), _num(d.get("p_holm")), _num(d.get("mde")), seeds])
    return rows


def calibration_rows(run) -> list[list[str]]:
    rows = []
    for c in run.calibration:
        ev = c.get("evaluation") or {}
        ci = ev.get("ci") or [None, None]
        diff = (f"{_num(ev.get('difference'), signed=True)} [{_num(ci[0], signed=True)}, {_num(ci[1], signed=True)}]"
                if ev else "not evaluated")
        where = " ".join(str(x) for x in (ev.get("dataset"), ev.get("split")) if x) if ev else ""
        rows.append([c.get("model", ""), c.get("method", ""),
                     "none" if c.get("temperature") is None else _num(c["temperature"], 3),
                     _num(c.get("ece_before")), _num(c.get("ece_after")), where,
                     str(ev["n"]) if ev.get("n") is not None else "", _num(ev.get("ece_raw")),
                     _num(ev.get("ece_reshaped")), diff, _num(ev.get("p_value")), _num(ev.get("mde"))])
    return rows


def trajectory_rows(run) -> list[list[str]]:
    roles = roles_of(run)
    rows = []
    for t in run.trajectory:
        t = _with_gap(t)
        chosen = ", ".join(SELECTED.get(s, str(s)) for s in t.get("selected_by") or [])
        rows.append([t.get("model", ""), str(t.get("step", "")), t.get("dataset", ""),
                     roles.get(t.get("dataset", "")) or t.get("role", ""), chosen]
                    + [cell(t, key, 3) for key in ("accuracy", "ece", "debiased_ece", "confidence_gap")])
    return rows


def knowledge_rows(run) -> list[list[str]]:
    rows = []
    for entry in (run.knowledge or {}).get("models", []):
        for s in entry["summaries"]:
            m = s["mass_mean"]
            pick = [m[k - 1] if len(m) >= k else float("nan") for k in (1, 3, 5, 10, 20)]
            rows.append([entry["model"], s["positions"], str(s["n_positions"])] + [f"{v:.3f}" for v in pick]
                        + [f"{s['share_mass_over_0_95'][4]:.0%}" if len(m) >= 5 else "n/a",
                           f"{s['kl_full_vs_topk_mean'][4]:.3f}" if len(m) >= 5 else "n/a"])
    return rows


def environment_items(run) -> list[tuple[str, str]]:
    """(key, value) of ``metrics.json``'s ``environment`` (or ``run.json``'s), nested dicts flattened
    into ``k=v`` lists."""
    env = run.metrics.get("environment") or run.info.get("environment") or {}
    if not isinstance(env, dict):
        return [("environment", str(env))]
    out = []
    for key, value in env.items():
        if isinstance(value, dict):
            text = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            text = ", ".join(str(v) for v in value)
        else:
            text = str(value)
        out.append((str(key), text))
    return out


def intro(run, esc=str, code=None) -> str:
    """The line under the title; ``esc`` escapes each value from the run's files for the output
    format, ``code`` (default ``esc``) also marks it as code."""
    info, meta = run.info, run.metrics.get("metadata", {})
    code = code or esc
    if is_predictions_run(run):
        source = info["source"]
        readings = ", ".join(source.get("readings") or [])
        return (f"Run {code(run.name)}, created {esc(info.get('created', '?'))} from the predictions table "
                f"{code(source.get('path', '?'))} (digest {code(source.get('digest', '?'))}"
                + (f"; reading {esc(readings)}" if readings else "") + "); no model was run. Confidence is the "
                f"top-label option probability; ECE uses {esc(meta.get('bins', '?'))} {esc(meta.get('scheme', '?'))} "
                f"bins; 95% CIs from {esc(meta.get('bootstrap', 0))} bootstrap resamples; paired comparisons on "
                "the items both models answered. Significance is a Holm-adjusted p below 0.05 (one family per "
                "pair of models and metric, over the datasets).")
    return (f"Run {code(run.name)}, created {esc(info.get('created', '?'))}; config hash "
            f"{code(info.get('config_hash', '?'))}; seed {esc(info.get('seed', '?'))}. Confidence is the "
            f"top-label option probability; ECE uses {esc(meta.get('bins', '?'))} {esc(meta.get('scheme', '?'))} "
            f"bins; 95% CIs from {esc(meta.get('bootstrap', 0))} bootstrap resamples. Significance is a "
            "Holm-adjusted p below 0.05; validation datasets are used for fitting and selection only and never "
            "enter a verdict.")


def is_predictions_run(run) -> bool:
    """Whether the run was made from a predictions table alone (``first-eval report --predictions``)."""
    source = run.info.get("source")
    return isinstance(source, dict) and source.get("kind") == "predictions"


def title_of(run) -> str:
    """``Study: NAME``, or ``Calibration report: NAME`` for a run made from predictions alone."""
    kind = "Calibration report" if is_predictions_run(run) else "Study"
    return f"{kind}: {run.info.get('study', run.name)}"


def lead_title(run) -> str:
    """The heading of the verdict list: the paper's claims for a study, findings for a predictions run."""
    if is_predictions_run(run):
        return "What it found"
    return "What held and what did not"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(run, claims: list[Claim]) -> str:
    info, meta = run.info, run.metrics.get("metadata", {})
    out = [f"# {_md(title_of(run))}", "", intro(run, _md, lambda s: f"`{_md(s)}`")]
    out += ["", f"## {lead_title(run)}", ""]
    for c in claims:
        key = f" — {_md(c.key)}" if c.key else ""
        out.append(f"- **{_md(c.verdict)}** — {_md(c.claim)}{key}")
    evidence = [c for c in claims if c.evidence]
    if evidence:
        out += ["", "<details><summary>The evidence for each verdict</summary>", ""]
        out += [f"- *{_md(c.claim)}*: {_md(c.evidence)}" for c in evidence]
        out += ["", "</details>"]
    out += ["", "Figures (the fine-tuning trajectory, reliability diagrams, paired differences) are in "
            "index.html."]
    out += ["", "## Headline metrics (95% CIs)", ""]
    out.append(_table(HEADLINE_HEADER, headline_rows(run)))
    out += ["", ECE_CI_NOTE]
    val = headline_rows(run, validation=True)
    if val:
        out += ["", "## Validation set (fitting and selection only)", ""]
        out.append(_table(HEADLINE_HEADER, val))
    out += ["", "## Other metrics (95% CIs)", ""]
    out.append(_table(OTHER_HEADER, other_rows(run)))
    seeds = seed_rows(run)
    if seeds:
        out += ["", "## Seed spread", ""]
        out.append(_table(SEED_HEADER, seeds))
    comp = comparison_rows(run)
    if comp:
        out += ["", "## Paired comparisons (same items, paired bootstrap)", ""]
        out.append(_table(COMPARISON_HEADER, comp))
    if run.calibration:
        out += ["", "## Trustworthy maximization (c fitted on validation, evaluated on a held-out split)", ""]
        out.append(_table(CALIBRATION_HEADER, calibration_rows(run)))
    if run.trajectory:
        out += ["", "## Across fine-tuning checkpoints", ""]
        out.append(_table(TRAJECTORY_HEADER, trajectory_rows(run)))
    know = knowledge_rows(run)
    if know:
        out += ["", "## Concentrated knowledge (mean mass in the top k tokens)", ""]
        out.append(_table(KNOWLEDGE_HEADER, know))
    out += ["", "## Reproducibility", ""]
    env = environment_items(run)
    out += [f"- {_md(k)}: {_md(v)}" for k, v in env]
    if env:
        out.append("")
    out += ["```", f"first-eval report {run.path}   # rebuild this report",
            meta.get("command", "first-eval metrics predictions.parquet --json"), "```", ""]
    versions = info.get("versions", {})
    if versions:
        out.append("Versions: " + _md(", ".join(f"{k} {v}" for k, v in versions.items())) + ".")
    return "\n".join(out) + "\n"
