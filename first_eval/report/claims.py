"""The paper's claims, checked against a run's numbers — in plain language, each with its figures.

Nothing here is tuned to make a claim hold: each check states its rule, and the verdict is one of
"held", "did not hold", "mixed", "within noise" or "not measured". The rules:

1. Tuning-induced mis-calibration: on each dataset, the teacher's ECE is above the base model's and
   its mean confidence above its accuracy.
2. Concentrated knowledge: the teacher's mean mass in its top 5 tokens is above 0.95, for each
   kind of position measured (the answer position, all positions).
3. Trustworthy maximization: the re-shaped teacher's validation ECE is below the un-reshaped one.
4-5. FIRST against a CE student and against top-k KD: the mean accuracy difference over the
   datasets is positive and the mean relative ECE change negative — the paper's averages. When
   none of the per-dataset paired differences (accuracy and ECE) is significant at p < 0.05, the
   verdict is "within noise" whichever way the averages lean; the evidence gives the count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Claim:
    claim: str
    verdict: str
    evidence: str


def _index(results: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["model"], r["dataset"]): r for r in results}


def _diff(comparisons: list[dict], a: str, b: str, dataset: str) -> dict | None:
    for c in comparisons:
        if c["model_a"] == a and c["model_b"] == b and c["dataset"] == dataset:
            return c["differences"]
    return None


def _verdict(flags: list[bool]) -> str:
    if not flags:
        return "not measured"
    if all(flags):
        return "held"
    if not any(flags):
        return "did not hold"
    return "mixed"


def _ci(d: dict | None, metric: str) -> str:
    if not d or metric not in d:
        return ""
    lo, hi = d[metric]["ci"]
    return f" (95% CI [{lo:+.3f}, {hi:+.3f}], p={d[metric]['p_value']:.3f})"


def check_claims(results: list[dict], comparisons: list[dict], roles: dict[str, str], *,
                 knowledge: dict[str, Any] | None = None, calibration: list[dict] | None = None,
                 base: str = "base", teacher: str = "teacher", first: str = "student-first",
                 ce: str = "student-ce", topk: str = "student-topk") -> list[Claim]:
    """Check the paper's claims on a study's results.

    Parameters
    ----------
    results : list of dict
        ``metrics.json`` results (one per model × dataset).
    comparisons : list of dict
        Paired bootstrap comparisons (``first-eval metrics --compare`` schema).
    roles : dict
        Dataset name → role.
    """
    idx = _index(results)
    datasets = list(dict.fromkeys(r["dataset"] for r in results))
    claims: list[Claim] = []

    # 1. Tuning-induced mis-calibration.
    flags, parts = [], []
    for d in datasets:
        b, t = idx.get((base, d)), idx.get((teacher, d))
        if not (b and t):
            continue
        gap = t.get("confidence_gap")
        over = (gap if gap is not None else 0.0) > 0
        worse = t["ece"] > b["ece"]
        flags.append(worse and over)
        gap_text = f", teacher's confidence − accuracy {gap:+.3f}" if gap is not None else ""
        parts.append(f"{d} ({roles.get(d, '?')}): accuracy {b['accuracy']:.3f} → {t['accuracy']:.3f}, "
                     f"ECE {b['ece']:.3f} → {t['ece']:.3f}{_ci(_diff(comparisons, teacher, base, d), 'ece')}"
                     f"{gap_text}")
    claims.append(Claim(
        "Fine-tuning with cross-entropy makes the model over-confident: its ECE rises above the base "
        "model's and its confidence exceeds its accuracy (checked on every dataset).",
        _verdict(flags), "; ".join(parts) or "base or teacher missing from the study"))

    # 2. Concentrated knowledge: top-5 > 95% of the mass.
    parts, flags = [], []
    for entry in (knowledge or {}).get("models", []):
        for s in entry.get("summaries", []):
            if len(s.get("mass_mean", [])) >= 5:
                m5 = s["mass_mean"][4]
                share = s["share_mass_over_0_95"][4]
                if entry["model"] == teacher:
                    flags.append(m5 > 0.95)
                parts.append(f"{entry['model']} at {s['positions']} positions: mean mass@5 {m5:.3f}, "
                             f"{share:.0%} of positions above 0.95")
    claims.append(Claim("The teacher's top-5 tokens carry more than 95% of the probability mass.",
                        _verdict(flags), "; ".join(parts) or "knowledge study not run"))

    # 3. Trustworthy maximization lowers the teacher's validation ECE.
    parts, flags = [], []
    for cal in calibration or []:
        if cal.get("ece_before") is None:
            continue
        flags.append(cal["ece_after"] < cal["ece_before"])
        c = cal.get("temperature")
        c_text = f"c = {c:.2f}" if c is not None else "no c beat the un-reshaped teacher"
        parts.append(f"{cal.get('model', teacher)} ({cal.get('method')}): {c_text}, "
                     f"validation ECE {cal['ece_before']:.3f} → {cal['ece_after']:.3f}")
    claims.append(Claim("Re-shaping the teacher's top-k with a fitted temperature c lowers its ECE "
                        "(trustworthy maximization).", _verdict(flags), "; ".join(parts) or "not run"))

    # 4/5. FIRST vs the CE student and vs top-k KD: +2.3% accuracy, −10% mis-calibration on average.
    for other, label in ((ce, "a CE-fine-tuned student"), (topk, "top-k KD without re-shaping")):
        acc_d, ece_rel, parts = [], [], []
        tested = significant = 0
        for d in datasets:
            f, o = idx.get((first, d)), idx.get((other, d))
            if not (f and o):
                continue
            acc_d.append(f["accuracy"] - o["accuracy"])
            rel = (f["ece"] - o["ece"]) / o["ece"] if o["ece"] > 0 else 0.0
            ece_rel.append(rel)
            diff = _diff(comparisons, first, other, d)
            for metric in ("accuracy", "ece"):
                if diff and metric in diff:
                    tested += 1
                    significant += diff[metric]["p_value"] < 0.05
            parts.append(f"{d}: accuracy {o['accuracy']:.3f} → {f['accuracy']:.3f}{_ci(diff, 'accuracy')}, "
                         f"ECE {o['ece']:.3f} → {f['ece']:.3f} ({rel:+.0%}){_ci(diff, 'ece')}")
        if acc_d:
            mean_acc, mean_rel = sum(acc_d) / len(acc_d), sum(ece_rel) / len(ece_rel)
            # Averages decide the direction, but with no per-dataset difference significant the
            # averages are noise: say so rather than "held" or "did not hold".
            verdict = "within noise" if tested and not significant else _verdict([mean_acc > 0, mean_rel < 0])
            noise = (f"; {significant} of {tested} per-dataset differences significant at p < 0.05"
                     if tested else "; no paired test run")
            evidence = (f"mean accuracy {mean_acc * 100:+.1f} points (paper: +2.3), mean relative ECE "
                        f"{mean_rel:+.0%} (paper: about −10%){noise}; " + "; ".join(parts))
        else:
            verdict, evidence = "not measured", f"{first} or {other} missing from the study"
        claims.append(Claim(f"FIRST beats {label} on accuracy and calibration, on average over the "
                            "in- and out-of-domain datasets (the paper: +2.3% accuracy, −10% ECE).",
                            verdict, evidence))
    return claims
