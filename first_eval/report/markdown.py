"""``report.md``: the study's tables and verdicts as plain Markdown (figures live in index.html)."""

from __future__ import annotations

from typing import Any

from first_eval.report.claims import Claim

HEADLINE = (("accuracy", "accuracy", 3), ("ece", "ECE", 3), ("brier", "Brier", 3), ("nll", "NLL", 3),
            ("auroc", "AUROC", 3))


def _md(text: Any) -> str:
    """Escape text for a Markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;") \
        .replace("\n", " ")


def cell(row: dict, key: str, digits: int) -> str:
    value = row.get(key)
    if value is None or value != value:
        return "n/a"
    text = f"{value:.{digits}f}"
    ci = row.get(f"{key}_ci")
    if ci and None not in ci:
        text += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return text


ECE_CI_NOTE = ("ECE's intervals are bootstrap percentiles of a statistic biased upward: resampling adds noise "
               "that the bins read as mis-calibration, so for a well-calibrated model the interval can lie "
               "above the point estimate. metrics.json also has debiased_ece, which corrects for that bias.")
"""Said under every headline table, so that an interval above its point estimate is not read as a bug."""

def headline_rows(run) -> list[list[str]]:
    roles = run.roles()
    rows = []
    for r in run.results:
        rows.append([r["model"], r["dataset"], roles.get(r["dataset"], ""), str(r["n"])]
                    + [cell(r, key, d) for key, _, d in HEADLINE])
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def comparison_rows(run) -> list[list[str]]:
    rows = []
    for c in run.metrics.get("comparisons", []):
        for metric in ("accuracy", "ece", "brier", "nll"):
            d = c["differences"].get(metric)
            if not d:
                continue
            lo, hi = d["ci"]
            rows.append([f"{c['model_a']} − {c['model_b']}", c["dataset"], metric, f"{d['difference']:+.4f}",
                         f"[{lo:+.4f}, {hi:+.4f}]", f"{d['p_value']:.4f}"])
    return rows


def render_markdown(run, claims: list[Claim]) -> str:
    info, meta = run.info, run.metrics.get("metadata", {})
    out = [f"# Study: {_md(info.get('study', run.name))}", ""]
    out.append(f"Run `{_md(run.name)}`, created {info.get('created', '?')}; config hash "
               f"`{info.get('config_hash', '?')}`; seed {info.get('seed', '?')}. "
               f"Confidence is the top-label option probability; ECE uses {meta.get('bins', '?')} "
               f"{meta.get('scheme', '?')} bins; 95% CIs from {meta.get('bootstrap', 0)} bootstrap resamples.")
    out += ["", "## What held and what did not", ""]
    for c in claims:
        out.append(f"- **{c.verdict.upper()}** — {_md(c.claim)}  ")
        out.append(f"  {_md(c.evidence)}")
    out += ["", "## Headline metrics (95% CIs)", ""]
    out.append(_table(["model", "dataset", "role", "n"] + [h for _, h, _ in HEADLINE], headline_rows(run)))
    out += ["", ECE_CI_NOTE]
    comp = comparison_rows(run)
    if comp:
        out += ["", "## Paired comparisons (same items, paired bootstrap)", ""]
        out.append(_table(["difference", "dataset", "metric", "value", "95% CI", "p"], comp))
    if run.calibration:
        out += ["", "## Trustworthy maximization (teacher, validation split)", ""]
        out.append(_table(["model", "method", "temperature", "ECE before", "ECE after"],
                          [[c.get("model", ""), c.get("method", ""),
                            "none" if c.get("temperature") is None else f"{c['temperature']:.3f}",
                            f"{c['ece_before']:.4f}", f"{c['ece_after']:.4f}"] for c in run.calibration]))
    if run.trajectory:
        out += ["", "## Across fine-tuning checkpoints", ""]
        out.append(_table(["model", "step", "dataset", "accuracy", "ECE", "mean confidence"],
                          [[t["model"], str(t["step"]), t["dataset"], f"{t['accuracy']:.3f}", f"{t['ece']:.3f}",
                            f"{t.get('mean_confidence', float('nan')):.3f}"] for t in run.trajectory]))
    if run.knowledge.get("models"):
        out += ["", "## Concentrated knowledge (mean mass in the top k tokens)", ""]
        rows = []
        for entry in run.knowledge["models"]:
            for s in entry["summaries"]:
                m = s["mass_mean"]
                pick = [m[k - 1] if len(m) >= k else float("nan") for k in (1, 3, 5, 10, 20)]
                rows.append([entry["model"], s["positions"], str(s["n_positions"])] + [f"{v:.3f}" for v in pick]
                            + [f"{s['share_mass_over_0_95'][4]:.0%}" if len(m) >= 5 else "n/a",
                               f"{s['kl_full_vs_topk_mean'][4]:.3f}" if len(m) >= 5 else "n/a"])
        out.append(_table(["model", "positions", "n", "mass@1", "mass@3", "mass@5", "mass@10", "mass@20",
                           "share mass@5 > 0.95", "KL(full‖top-5) nats"], rows))
    out += ["", "## Reproduce", "", "```", f"first-eval report {run.path}   # rebuild this report",
            meta.get("command", "first-eval metrics predictions.parquet --json"), "```", ""]
    versions = info.get("versions", {})
    if versions:
        out.append("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    return "\n".join(out) + "\n"
