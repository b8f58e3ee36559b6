"""The report's claim checks, on hand-made numbers whose verdicts are worked out by hand."""

from __future__ import annotations

import pytest

from first_eval.report.claims import check_claims

ROLES = {"id": "in-domain", "ood": "near-ood"}


def row(model, dataset, accuracy, ece, gap=None):
    return {"model": model, "dataset": dataset, "accuracy": accuracy, "ece": ece, "confidence_gap": gap}


def comparison(a, b, dataset, *, acc_p=0.5, ece_p=0.5):
    return {"model_a": a, "model_b": b, "dataset": dataset,
            "differences": {"accuracy": {"ci": [-0.1, 0.1], "p_value": acc_p},
                            "ece": {"ci": [-0.2, 0.05], "p_value": ece_p}}}


def by_start(claims, text):
    return next(c for c in claims if c.claim.startswith(text))


def test_mis_calibration_needs_ece_up_and_over_confidence_on_every_dataset():
    results = [row("base", "id", 0.3, 0.10), row("teacher", "id", 0.8, 0.15, gap=+0.10),
               row("base", "ood", 0.3, 0.10), row("teacher", "ood", 0.5, 0.20, gap=+0.15)]
    c = by_start(check_claims(results, [], ROLES), "Fine-tuning")
    assert c.verdict == "held"
    results[3] = row("teacher", "ood", 0.5, 0.05, gap=-0.02)  # better calibrated out of domain
    c = by_start(check_claims(results, [comparison("teacher", "base", "id")], ROLES), "Fine-tuning")
    assert c.verdict == "mixed"
    # The CI printed next to the ECE change is the paired teacher − base ECE difference's.
    assert "ECE 0.100 → 0.150 (95% CI [-0.200, +0.050], p=0.500), teacher's confidence − accuracy +0.100" \
        in c.evidence
    results[1] = row("teacher", "id", 0.8, 0.05, gap=+0.01)  # ECE down though confidence > accuracy
    assert by_start(check_claims(results, [], ROLES), "Fine-tuning").verdict == "did not hold"


def test_first_claims_use_the_papers_averages_and_count_significant_differences():
    results = [row("student-first", "id", 0.50, 0.09), row("student-ce", "id", 0.40, 0.10),
               row("student-first", "ood", 0.30, 0.30), row("student-ce", "ood", 0.34, 0.20)]
    comps = [comparison("student-first", "student-ce", "id", acc_p=0.01, ece_p=0.5),
             comparison("student-first", "student-ce", "ood", acc_p=0.2, ece_p=0.04)]
    c = by_start(check_claims(results, comps, ROLES), "FIRST beats a CE")
    # accuracy: (+0.10 − 0.04) / 2 = +3.0 points; relative ECE: (−10% + 50%) / 2 = +20%.
    assert "mean accuracy +3.0 points" in c.evidence and "mean relative ECE +20%" in c.evidence
    assert c.verdict == "mixed"
    assert "2 of 4 per-dataset differences significant at p < 0.05" in c.evidence
    results[2] = row("student-first", "ood", 0.30, 0.17)  # relative ECE: (−10% − 15%) / 2 < 0
    assert by_start(check_claims(results, comps, ROLES), "FIRST beats a CE").verdict == "held"
    # With no significant per-dataset difference, averages that lean either way are noise.
    quiet = [comparison("student-first", "student-ce", d) for d in ("id", "ood")]
    c = by_start(check_claims(results, quiet, ROLES), "FIRST beats a CE")
    assert c.verdict == "within noise" and "0 of 4 per-dataset differences significant" in c.evidence
    topk = by_start(check_claims(results, comps, ROLES), "FIRST beats top-k")
    assert topk.verdict == "not measured" and "missing" in topk.evidence


@pytest.mark.parametrize("teacher_mass5, verdict", [([0.99, 0.97], "held"), ([0.99, 0.80], "mixed"),
                                                     ([0.90, 0.80], "did not hold")])
def test_concentrated_knowledge_checks_every_kind_of_position(teacher_mass5, verdict):
    def summary(positions, m5):
        return {"positions": positions, "mass_mean": [0.5, 0.6, 0.7, 0.8, m5],
                "share_mass_over_0_95": [0, 0, 0, 0, 0.5]}

    knowledge = {"models": [
        {"model": "base", "summaries": [summary("response", 0.5), summary("all", 0.5)]},
        {"model": "teacher", "summaries": [summary("response", teacher_mass5[0]),
                                           summary("all", teacher_mass5[1])]}]}
    c = by_start(check_claims([], [], {}, knowledge=knowledge), "The teacher's top-5")
    assert c.verdict == verdict  # the base model's mass never counts toward the verdict


def test_trustworthy_maximization_and_missing_parts():
    cal = [{"model": "teacher", "method": "reshape", "temperature": 0.16, "ece_before": 0.075, "ece_after": 0.054}]
    claims = check_claims([], [], {}, calibration=cal)
    c = by_start(claims, "Re-shaping")
    assert c.verdict == "held" and "c = 0.16, validation ECE 0.075 → 0.054" in c.evidence
    assert all(x.verdict == "not measured" for x in claims if x is not c)
