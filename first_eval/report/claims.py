"""The paper's claims, checked against a run's numbers — in plain language, each with its figures.

Nothing here is tuned to make a claim hold: each check states its rule below, and its verdict is
one of "held", "did not hold", "mixed", "within noise", "not measured" or "reduced to top-k KD".

Conventions
-----------
* **Significant** means the Holm-adjusted p-value (``p_holm``; ``p_value`` where a run has no
  ``p_holm``) is below 0.05. Holm's family is one (model_a, model_b, metric) over the datasets.
* Datasets with the role ``validation`` were used to fit or select models: they are never part
  of a verdict and never appear in the evidence of one.
* Evidence gives absolute differences (never relative ECE changes) with their 95% CIs, the
  p-value used and the minimum detectable difference ("MDE", at 80% power), one clause per
  dataset.
* A model or comparison the run lacks gives "not measured", with the reason.

The rules
---------
1. Tuning-induced mis-calibration (teacher against base, on every non-validation dataset with a
   paired [teacher, base] comparison). A dataset counts for the claim when the teacher − base ECE
   difference is significant and positive *and* the teacher's ``confidence_gap`` (mean confidence
   − accuracy) has its CI above 0 (for an old run without ``confidence_gap_ci``: the point value
   above 0). Verdict: "within noise" when no teacher − base ECE difference is significant either
   way; else "held" when every dataset counts, "did not hold" when none does, "mixed" otherwise.
   Two findings are added to the evidence, not to the verdict: (b) across fine-tuning
   checkpoints, the teacher's confidence − accuracy at the shipped step (``selected_by`` holds
   "val-accuracy") against the last step, and the [teacher-last, teacher] ECE difference;
   (c) out of domain, the teacher's ECE on each OOD dataset against in-domain — different items,
   so it is called "worse" (or "better") only when the two CIs do not overlap.
2. Concentrated knowledge: the teacher's mean mass in its top 5 tokens is above 0.95, for each
   kind of position measured; "held" for all, "did not hold" for none, "mixed" otherwise.
3. Trustworthy maximization, judged on the calibration entry's ``evaluation`` (re-shaped − raw
   teacher ECE on a split c was not fitted on), never on the fit split. ``temperature`` None (no c
   of the grid beat the raw teacher on validation): "reduced to top-k KD". Else "held" when the
   difference is negative with its CI below 0, "did not hold" when the CI is above 0, "within
   noise" otherwise; no ``evaluation``: "not measured". Entries of method "temperature" (not a
   re-shaping) are left out; several entries that disagree give "mixed".
4-6. FIRST against a CE student, against top-k KD and against the CE student with temperature
   scaling fitted on validation. On each non-validation dataset with a paired [first, other]
   comparison, the accuracy and ECE differences (first − other) are tested: in FIRST's favour
   when significant with accuracy > 0 or ECE < 0, against it when significant the other way.
   "held": at least one in favour and none against; "did not hold": at least one against and
   none in favour; "mixed": both; "within noise": none significant (the evidence then says what
   the run could have detected: the median MDE over the datasets). Debiased and smooth ECE
   differences are in the evidence, not in the verdict. Claim 5 is "reduced to top-k KD" when
   the calibration says FIRST's c is None (every re-shaping entry): the two students are then the
   same recipe and are not compared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import median
from typing import Any

ALPHA = 0.05
VALIDATION = "validation"
IN_DOMAIN = "in-domain"
OOD_ROLES = ("near-ood", "far-ood")
VERDICTS = ("held", "did not hold", "mixed", "within noise", "not measured", "reduced to top-k KD")
LABELS = {"accuracy": "accuracy", "ece": "ECE", "debiased_ece": "debiased ECE", "smooth_ece": "smooth ECE"}


@dataclass(frozen=True)
class Claim:
    claim: str
    verdict: str
    evidence: str
    key: str = ""
    """The claim's key number with its CI, for the one-line verdict list (may be empty)."""


# ---------------------------------------------------------------------------- formatting
def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def num(x: Any, digits: int = 3, *, signed: bool = True) -> str:
    """A number as the evidence prints it: signed, with a real minus sign; "n/a" when missing."""
    if not _finite(x):
        return "n/a"
    return (f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}").replace("-", "−")


def interval(ci: Any, digits: int = 3, *, signed: bool = True) -> str:
    """``[lo, hi]``, or "" without a finite interval."""
    if not ci or len(ci) != 2 or not all(_finite(v) for v in ci):
        return ""
    return f"[{num(ci[0], digits, signed=signed)}, {num(ci[1], digits, signed=signed)}]"


def p_of(entry: dict) -> tuple[float | None, str]:
    """(p, its name): the Holm-adjusted p where there is one, else the unadjusted p."""
    if _finite(entry.get("p_holm")):
        return float(entry["p_holm"]), "p_holm"
    if _finite(entry.get("p_value")):
        return float(entry["p_value"]), "p"
    return None, "p"


def significant(entry: dict | None) -> bool:
    if not entry:
        return False
    p, _ = p_of(entry)
    return p is not None and p < ALPHA and _finite(entry.get("difference"))


def _p_text(entry: dict) -> str:
    p, name = p_of(entry)
    if p is None:
        return f"{name} n/a"
    return f"{name} < 0.001" if p < 0.001 else f"{name} {p:.3f}"


def difference_text(entry: dict | None, label: str) -> str:
    """``ECE −0.031 [−0.052, −0.011], p_holm 0.004, MDE 0.028``."""
    if not entry:
        return f"{label} not compared"
    parts = [f"{label} {num(entry.get('difference'))}"]
    ci = interval(entry.get("ci"))
    if ci:
        parts[0] += f" {ci}"
    parts.append(_p_text(entry))
    if _finite(entry.get("mde")):
        parts.append(f"MDE {num(entry['mde'], signed=False)}")
    return ", ".join(parts)


def _short_difference(entry: dict | None, label: str) -> str:
    if not entry:
        return ""
    return f"{label} {num(entry.get('difference'))} {interval(entry.get('ci'))}".rstrip()


# ---------------------------------------------------------------------------- lookups
def _index(results: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["model"], r["dataset"]): r for r in results}


def comparison(comparisons: list[dict], a: str, b: str, dataset: str) -> tuple[dict, dict] | None:
    """(row, differences oriented a − b) for the pair on a dataset; a row stored as b − a is
    turned round (difference and CI negated; p-values and MDE are the same)."""
    for c in comparisons:
        if c.get("dataset") != dataset:
            continue
        if c.get("model_a") == a and c.get("model_b") == b:
            return c, c.get("differences") or {}
        if c.get("model_a") == b and c.get("model_b") == a:
            flipped = {}
            for metric, d in (c.get("differences") or {}).items():
                d = dict(d)
                if _finite(d.get("difference")):
                    d["difference"] = -d["difference"]
                ci = d.get("ci")
                if ci and len(ci) == 2 and all(_finite(v) for v in ci):
                    d["ci"] = [-ci[1], -ci[0]]
                flipped[metric] = d
            return {**c, "model_a": a, "model_b": b, "n_seeds_a": c.get("n_seeds_b"),
                    "n_seeds_b": c.get("n_seeds_a")}, flipped
    return None


def _datasets(results: list[dict], comparisons: list[dict], roles: dict[str, str]) -> list[str]:
    """Every dataset of the run but the validation ones, in order of first appearance."""
    names = dict.fromkeys([r["dataset"] for r in results] + [c["dataset"] for c in comparisons])
    return [d for d in names if roles.get(d) != VALIDATION]


def _where(d: str, roles: dict[str, str]) -> str:
    role = roles.get(d)
    return f"{d} ({role})" if role else d


def _key_dataset(datasets: list[str], roles: dict[str, str]) -> str | None:
    """The dataset whose numbers lead the verdict list: the first in-domain one, else the first."""
    return next((d for d in datasets if roles.get(d) == IN_DOMAIN), datasets[0] if datasets else None)


def _verdict(flags: list[bool]) -> str:
    if not flags:
        return "not measured"
    if all(flags):
        return "held"
    if not any(flags):
        return "did not hold"
    return "mixed"


def _gap(row: dict) -> float | None:
    gap = row.get("confidence_gap")
    if _finite(gap):
        return float(gap)
    if _finite(row.get("mean_confidence")) and _finite(row.get("accuracy")):
        return float(row["mean_confidence"] - row["accuracy"])
    return None


# ---------------------------------------------------------------------------- claim 1
CLAIM_MISCALIBRATION = ("Fine-tuning with cross-entropy makes the model over-confident: its ECE rises "
                        "significantly above the base model's and its confidence exceeds its accuracy "
                        "(on every dataset but the validation set).")


def _trajectory_findings(trajectory: list[dict], comparisons: list[dict], roles: dict[str, str],
                         datasets: list[str], teacher: str, teacher_last: str, teacher_es: str) -> list[str]:
    """(b): confidence − accuracy at the shipped step against the last one, and last − shipped ECE."""
    rows = [r for r in trajectory or [] if _finite(r.get("step"))]
    models = [m for m in dict.fromkeys(r.get("model") for r in rows) if m in (teacher, teacher_last, teacher_es)]
    if models:
        rows = [r for r in rows if r.get("model") == models[0]]
    row_roles = {r.get("dataset", ""): r.get("role") for r in rows if r.get("role")}
    traj_ds = [d for d in dict.fromkeys(r.get("dataset", "") for r in rows)
               if (roles.get(d) or row_roles.get(d)) != VALIDATION]
    out = []
    for d in dict.fromkeys(traj_ds + datasets):
        sub = sorted((r for r in rows if r.get("dataset", "") == d), key=lambda r: r["step"])
        found = comparison(comparisons, teacher_last, teacher, d)
        ece = (found[1] if found else {}).get("ece")
        clause = []
        shipped = next((r for r in sub if "val-accuracy" in (r.get("selected_by") or [])), None)
        last = next((r for r in sub if "last" in (r.get("selected_by") or [])), sub[-1] if sub else None)
        if shipped is not None and last is not None:
            if shipped["step"] == last["step"]:
                clause.append(f"the shipped checkpoint is the last (step {shipped['step']})")
            else:
                gs, gl = _gap(shipped), _gap(last)
                clause.append(
                    f"conf−acc {num(gs)} {interval(shipped.get('confidence_gap_ci'))}".rstrip()
                    + f" at the shipped step {shipped['step']} → {num(gl)} "
                    + f"{interval(last.get('confidence_gap_ci'))}".rstrip()
                    + f" at the last step {last['step']}, accuracy {num(shipped.get('accuracy'), signed=False)}"
                    + f" → {num(last.get('accuracy'), signed=False)}")
        if ece:
            clause.append(difference_text(ece, "last − shipped ECE"))
        if clause:
            out.append(f"{_where(d, {**row_roles, **roles})}: " + ", ".join(clause))
    return out


def _ood_findings(idx: dict, roles: dict[str, str], datasets: list[str], teacher: str) -> list[str]:
    """(c): the teacher's ECE out of domain against in domain (different items: CIs compared)."""
    ids = [d for d in datasets if roles.get(d) == IN_DOMAIN and (teacher, d) in idx]
    oods = [d for d in datasets if roles.get(d) in OOD_ROLES and (teacher, d) in idx]
    out = []
    for o in oods:
        for i in ids:
            to, ti = idx[(teacher, o)], idx[(teacher, i)]
            co, ci = to.get("ece_ci"), ti.get("ece_ci")
            have = interval(co) and interval(ci)
            if not have:
                call = "no CIs to compare"
            elif co[0] > ci[1]:
                call = "worse (CIs do not overlap)"
            elif co[1] < ci[0]:
                call = "better (CIs do not overlap)"
            else:
                call = "CIs overlap: not shown to differ"
            out.append(f"{_where(o, roles)} ECE {num(to.get('ece'), signed=False)} "
                       f"{interval(co, signed=False)} vs {i} {num(ti.get('ece'), signed=False)} "
                       f"{interval(ci, signed=False)}: {call}".replace("  ", " "))
    return out


def _claim_miscalibration(idx, comparisons, roles, datasets, trajectory, *, base, teacher, teacher_last,
                          teacher_es) -> Claim:
    ds = [d for d in datasets if (base, d) in idx and (teacher, d) in idx]
    if not ds:
        return Claim(CLAIM_MISCALIBRATION, "not measured", f"{base} or {teacher} missing from the study")
    flags, parts, any_sig, key = [], [], False, ""
    key_ds = _key_dataset([d for d in ds if comparison(comparisons, teacher, base, d)], roles)
    for d in ds:
        b, t = idx[(base, d)], idx[(teacher, d)]
        found = comparison(comparisons, teacher, base, d)
        ece = (found[1] if found else {}).get("ece")
        gap, gap_ci = _gap(t), t.get("confidence_gap_ci")
        over = gap_ci[0] > 0 if interval(gap_ci) else (gap is not None and gap > 0)
        if ece:
            clause = difference_text(ece, "ECE")
        else:
            clause = (f"ECE {num(b.get('ece'), signed=False)} → {num(t.get('ece'), signed=False)} "
                      "(no paired test: not counted)")
        clause += f", teacher conf−acc {num(gap)} {interval(gap_ci)}".rstrip()
        parts.append(f"{_where(d, roles)}: {clause}")
        if ece:
            sig = significant(ece)
            any_sig |= sig
            flags.append(sig and ece["difference"] > 0 and over)
            if d == key_ds:
                key = f"{_short_difference(ece, 'ECE')} teacher − base ({d})"
    if not flags:
        verdict = "not measured"
        parts.insert(0, f"no paired {teacher} − {base} ECE comparison")
    elif not any_sig:
        verdict = "within noise"
    else:
        verdict = _verdict(flags)
    sections = [f"{teacher} − {base}: " + "; ".join(parts)]
    traj = _trajectory_findings(trajectory, comparisons, roles, ds, teacher, teacher_last, teacher_es)
    if traj:
        sections.append("Across checkpoints: " + "; ".join(traj))
    ood = _ood_findings(idx, roles, ds, teacher)
    if ood:
        sections.append("Out of domain: " + "; ".join(ood))
    return Claim(CLAIM_MISCALIBRATION, verdict, ". ".join(sections), key)


# ---------------------------------------------------------------------------- claim 2
CLAIM_KNOWLEDGE = "The teacher's top-5 tokens carry more than 95% of the probability mass."


def _claim_knowledge(knowledge, teacher) -> Claim:
    parts, flags, key = [], [], ""
    for entry in (knowledge or {}).get("models", []):
        for s in entry.get("summaries", []):
            if len(s.get("mass_mean", [])) >= 5:
                m5 = s["mass_mean"][4]
                share = s["share_mass_over_0_95"][4]
                if entry["model"] == teacher:
                    flags.append(m5 > 0.95)
                    key = key or f"mean mass@5 {m5:.3f} ({teacher}, {s['positions']} positions)"
                parts.append(f"{entry['model']} at {s['positions']} positions: mean mass@5 {m5:.3f}, "
                             f"{share:.0%} of positions above 0.95")
    return Claim(CLAIM_KNOWLEDGE, _verdict(flags), "; ".join(parts) or "knowledge study not run", key)


# ---------------------------------------------------------------------------- claim 3
CLAIM_MAXIMIZATION = ("Re-shaping the teacher's top-k with a fitted temperature c lowers its ECE on data c "
                      "was not fitted on (trustworthy maximization).")


def _reshaping(calibration: list[dict] | None) -> list[dict]:
    return [c for c in calibration or [] if c.get("method") != "temperature"]


def _claim_maximization(calibration, teacher) -> Claim:
    entries = _reshaping(calibration)
    if not entries:
        return Claim(CLAIM_MAXIMIZATION, "not measured", "trustworthy maximization not run")
    verdicts, parts, key = [], [], ""
    for cal in entries:
        who = cal.get("model", teacher)
        c = cal.get("temperature")
        if c is None:
            verdicts.append("reduced to top-k KD")
            parts.append(f"{who}: no c in the grid beat the raw teacher on validation (ECE "
                         f"{num(cal.get('ece_before'), signed=False)}); FIRST is top-k KD for this teacher")
            key = key or "no c beat the raw teacher on validation"
            continue
        fit = (f"{who}: c = {num(c, signed=False)}, fit on validation: ECE "
               f"{num(cal.get('ece_before'), signed=False)} → {num(cal.get('ece_after'), signed=False)}")
        ev = cal.get("evaluation")
        if not ev:
            verdicts.append("not measured")
            parts.append(f"{fit}; not evaluated on a split c was not fitted on")
            continue
        diff, ci = ev.get("difference"), ev.get("ci")
        has_ci = bool(interval(ci))
        if _finite(diff) and diff < 0 and has_ci and ci[1] < 0:
            verdicts.append("held")
        elif has_ci and ci[0] > 0:
            verdicts.append("did not hold")
        else:
            verdicts.append("within noise")
        n = f", n = {ev['n']}" if ev.get("n") is not None else ""
        split = f" {ev['split']}" if ev.get("split") else ""
        where = f"{ev.get('dataset', '?')}{split}{n}"
        parts.append(f"{fit}; on {where} (not fitted on): ECE {num(ev.get('ece_raw'), signed=False)} → "
                     f"{num(ev.get('ece_reshaped'), signed=False)}, "
                     + difference_text(ev, "re-shaped − raw ECE"))
        key = key or f"{_short_difference(ev, 're-shaped − raw ECE')} on {ev.get('dataset', '?')}"
    verdict = verdicts[0] if len(set(verdicts)) == 1 else "mixed"
    return Claim(CLAIM_MAXIMIZATION, verdict, "; ".join(parts), key)


def reduced_to_topk(calibration: list[dict] | None) -> bool:
    """Whether FIRST's re-shaping kept no c (every re-shaping entry has ``temperature`` None)."""
    entries = _reshaping(calibration)
    return bool(entries) and all(c.get("temperature") is None for c in entries)


# ---------------------------------------------------------------------------- claims 4-6
def _claim_versus(idx, comparisons, roles, datasets, *, first, other, text) -> Claim:
    arms = {m for m, _ in idx}
    rows = [(d, *found) for d in datasets if (found := comparison(comparisons, first, other, d))]
    if not rows:
        missing = [m for m in (first, other) if m not in arms]
        reason = (f"{' and '.join(missing)} missing from the study" if missing
                  else f"no paired comparison {first} − {other} in the run")
        return Claim(text, "not measured", reason)
    favour = against = tested = 0
    mde = {"accuracy": [], "ece": []}
    parts = []
    key_ds = _key_dataset([d for d, _, _ in rows], roles)
    key = ""
    for d, row, diffs in rows:
        sa = row.get("n_seeds_a") or idx.get((first, d), {}).get("n_seeds") or 1
        sb = row.get("n_seeds_b") or idx.get((other, d), {}).get("n_seeds") or 1
        role = roles.get(d)
        head = f"{d} ({role + ', ' if role else ''}seeds {sa} vs {sb})"
        clauses = []
        for metric in ("accuracy", "ece"):
            e = diffs.get(metric)
            if not e:
                continue
            tested += 1
            if _finite(e.get("mde")):
                mde[metric].append(float(e["mde"]))
            if significant(e):
                good = e["difference"] > 0 if metric == "accuracy" else e["difference"] < 0
                favour += good
                against += not good
            clauses.append(difference_text(e, LABELS[metric]))
        for metric in ("debiased_ece", "smooth_ece"):
            if diffs.get(metric):
                clauses.append(difference_text(diffs[metric], LABELS[metric]))
        parts.append(f"{head}: " + " / ".join(clauses))
        if d == key_ds:
            key = ", ".join(x for x in (_short_difference(diffs.get("accuracy"), "accuracy"),
                                        _short_difference(diffs.get("ece"), "ECE")) if x) + f" ({d})"
    if not tested:
        return Claim(text, "not measured", f"no accuracy or ECE difference {first} − {other} in the run")
    if favour and against:
        verdict = "mixed"
    elif favour:
        verdict = "held"
    elif against:
        verdict = "did not hold"
    else:
        verdict = "within noise"
    prefix = f"{first} − {other}: "
    if verdict == "within noise":
        acc = num(median(mde["accuracy"]), signed=False) if mde["accuracy"] else "n/a"
        ece = num(median(mde["ece"]), signed=False) if mde["ece"] else "n/a"
        prefix = (f"no accuracy or ECE difference significant (p < {ALPHA}, Holm-adjusted where given); "
                  "could have detected about "
                  f"{acc} accuracy and {ece} ECE. " + prefix)
        key = (key + "; " if key else "") + f"MDE about {acc} accuracy, {ece} ECE"
    else:
        prefix = f"{favour} significant in FIRST's favour, {against} against. " + prefix
    return Claim(text, verdict, prefix + "; ".join(parts), key)


CLAIM_VS_CE = ("FIRST beats a CE-fine-tuned student: a significant gain in accuracy or calibration on some "
               "dataset and a significant loss on none.")
CLAIM_VS_TOPK = ("FIRST beats top-k KD without re-shaping: a significant gain in accuracy or calibration on "
                 "some dataset and a significant loss on none.")
CLAIM_VS_CE_TS = ("FIRST beats a CE student with temperature scaling fitted on validation (the one-parameter "
                  "baseline): a significant gain in accuracy or calibration on some dataset and a significant "
                  "loss on none.")


# ---------------------------------------------------------------------------- all
def check_claims(results: list[dict], comparisons: list[dict], roles: dict[str, str], *,
                 knowledge: dict[str, Any] | None = None, calibration: list[dict] | None = None,
                 trajectory: list[dict] | None = None,
                 base: str = "base", teacher: str = "teacher", teacher_last: str = "teacher-last",
                 teacher_es: str = "teacher-es", first: str = "student-first", ce: str = "student-ce",
                 topk: str = "student-topk", ce_ts: str = "student-ce+ts") -> list[Claim]:
    """Check the paper's claims on a study's results (the rules: this module's docstring).

    Parameters
    ----------
    results : list of dict
        ``metrics.json`` results, one per (arm, dataset); ``confidence_gap`` (and its ``_ci``)
        where known.
    comparisons : list of dict
        Paired comparisons (:func:`first_eval.arms.compute_arm_comparisons` rows, with
        ``p_holm`` where adjusted).
    roles : dict
        Dataset name → role; ``validation`` datasets never count.
    knowledge, calibration, trajectory : optional
        ``knowledge.json``, ``calibration.json`` and ``trajectory.json`` of the run.
    base, teacher, teacher_last, teacher_es, first, ce, topk, ce_ts : str
        The models' (arms') names in the run.

    Returns
    -------
    list of Claim
        Six claims, in the order of the rules.
    """
    results = [r for r in results if roles.get(r["dataset"]) != VALIDATION]
    comparisons = [c for c in comparisons or [] if roles.get(c["dataset"]) != VALIDATION]
    idx = _index(results)
    datasets = _datasets(results, comparisons, roles)
    claims = [
        _claim_miscalibration(idx, comparisons, roles, datasets, trajectory, base=base, teacher=teacher,
                              teacher_last=teacher_last, teacher_es=teacher_es),
        _claim_knowledge(knowledge, teacher),
        _claim_maximization(calibration, teacher),
        _claim_versus(idx, comparisons, roles, datasets, first=first, other=ce, text=CLAIM_VS_CE),
    ]
    if reduced_to_topk(calibration):
        claims.append(Claim(CLAIM_VS_TOPK, "reduced to top-k KD",
                            f"{first} is {topk}: no c beat the raw teacher", "the same recipe"))
    else:
        claims.append(_claim_versus(idx, comparisons, roles, datasets, first=first, other=topk, text=CLAIM_VS_TOPK))
    claims.append(_claim_versus(idx, comparisons, roles, datasets, first=first, other=ce_ts, text=CLAIM_VS_CE_TS))
    return claims
