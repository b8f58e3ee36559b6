"""The report's claim checks, on hand-made numbers whose verdicts are worked out by hand.

The verdict matrix of every claim is in test_report_v2.py; here: the evidence each rule prints
and the findings that are stated but do not decide a verdict."""

from __future__ import annotations

import pytest

from first_eval.report.claims import check_claims

ROLES = {"id": "in-domain", "ood": "near-ood", "val": "validation"}


def row(model, dataset, accuracy, ece, *, gap=None, gap_ci=None, ece_ci=None, n_seeds=1):
    return {"model": model, "dataset": dataset, "n": 100, "accuracy": accuracy, "ece": ece, "ece_ci": ece_ci,
            "confidence_gap": gap, "confidence_gap_ci": gap_ci, "n_seeds": n_seeds}


def diff(d, lo, hi, *, p=0.5, p_holm=None, mde=0.028):
    out = {"difference": d, "ci": [lo, hi], "p_value": p, "se": mde / 2.8, "mde": mde}
    if p_holm is not None:
        out["p_holm"] = p_holm
    return out


def comparison(a, b, dataset, *, seeds=(1, 1), **differences):
    return {"model_a": a, "model_b": b, "dataset": dataset, "n": 100, "n_resamples": 1000,
            "n_seeds_a": seeds[0], "n_seeds_b": seeds[1], "differences": differences}


def by_start(claims, text):
    return next(c for c in claims if c.claim.startswith(text))


def test_mis_calibration_evidence_is_absolute_with_ci_p_holm_and_mde():
    results = [row("base", "id", 0.3, 0.10), row("teacher", "id", 0.8, 0.15, gap=0.10, gap_ci=[0.05, 0.15])]
    comps = [comparison("teacher", "base", "id", ece=diff(0.05, 0.02, 0.08, p=0.004, p_holm=0.004))]
    c = by_start(check_claims(results, comps, ROLES), "Fine-tuning")
    assert c.verdict == "held"
    assert ("id (in-domain): ECE +0.050 [+0.020, +0.080], p_holm 0.004, MDE 0.028, "
            "teacher conf−acc +0.100 [+0.050, +0.150]") in c.evidence
    assert "%" not in c.evidence  # no relative ECE change anywhere
    assert c.key == "ECE +0.050 [+0.020, +0.080] teacher − base (id)"


def test_mis_calibration_states_the_trajectory_and_the_ood_findings():
    results = [row("base", "id", 0.3, 0.10), row("base", "ood", 0.3, 0.10),
               row("teacher", "id", 0.8, 0.08, gap=0.05, gap_ci=[0.02, 0.08], ece_ci=[0.06, 0.10]),
               row("teacher", "ood", 0.5, 0.25, gap=0.20, gap_ci=[0.15, 0.25], ece_ci=[0.20, 0.30])]
    comps = [comparison("teacher", "base", d, ece=diff(0.1, 0.05, 0.15, p=0.001, p_holm=0.002)) for d in ("id", "ood")]
    comps.append(comparison("teacher-last", "teacher", "id", ece=diff(0.03, 0.01, 0.05, p=0.01, p_holm=0.02)))
    trajectory = [
        {"model": "teacher", "step": 100, "dataset": "id", "role": "in-domain", "accuracy": 0.80,
         "confidence_gap": 0.02, "confidence_gap_ci": [0.0, 0.04], "selected_by": ["val-accuracy"]},
        {"model": "teacher", "step": 200, "dataset": "id", "role": "in-domain", "accuracy": 0.81,
         "confidence_gap": 0.09, "confidence_gap_ci": [0.07, 0.11], "selected_by": ["last"]},
        # The validation rows are the selection's, never evidence.
        {"model": "teacher", "step": 200, "dataset": "val", "role": "validation", "accuracy": 0.9,
         "confidence_gap": 0.5, "selected_by": ["last"]},
    ]
    c = by_start(check_claims(results, comps, ROLES, trajectory=trajectory), "Fine-tuning")
    assert c.verdict == "held"  # the findings are stated, and the verdict rule is the teacher − base one
    assert ("Across checkpoints: id (in-domain): conf−acc +0.020 [+0.000, +0.040] at the shipped step 100 → "
            "+0.090 [+0.070, +0.110] at the last step 200, accuracy 0.800 → 0.810, "
            "last − shipped ECE +0.030 [+0.010, +0.050], p_holm 0.020, MDE 0.028") in c.evidence
    assert "val" not in c.evidence.split("Across checkpoints:")[1].split("Out of domain")[0].replace("val-", "")
    assert ("Out of domain: ood (near-ood) ECE 0.250 [0.200, 0.300] vs id 0.080 [0.060, 0.100]: worse "
            "(CIs do not overlap)") in c.evidence
    results[3] = row("teacher", "ood", 0.5, 0.12, gap=0.2, gap_ci=[0.15, 0.25], ece_ci=[0.09, 0.16])
    c = by_start(check_claims(results, comps, ROLES, trajectory=trajectory), "Fine-tuning")
    assert "CIs overlap: not shown to differ" in c.evidence


def test_mis_calibration_without_a_paired_test_is_not_measured():
    results = [row("base", "id", 0.3, 0.10), row("teacher", "id", 0.8, 0.15, gap=0.10)]
    c = by_start(check_claims(results, [], ROLES), "Fine-tuning")
    assert c.verdict == "not measured" and "no paired teacher − base ECE comparison" in c.evidence
    c = by_start(check_claims(results[:1], [], ROLES), "Fine-tuning")
    assert c.verdict == "not measured" and "missing" in c.evidence


def test_old_run_without_gap_ci_uses_the_point_gap_and_p_value():
    results = [row("base", "id", 0.3, 0.10), row("teacher", "id", 0.8, 0.15, gap=0.10)]
    comps = [comparison("teacher", "base", "id", ece={"difference": 0.05, "ci": [0.01, 0.09], "p_value": 0.01})]
    c = by_start(check_claims(results, comps, ROLES), "Fine-tuning")
    assert c.verdict == "held" and "ECE +0.050 [+0.010, +0.090], p 0.010" in c.evidence


def test_first_vs_ce_evidence_names_every_metric_and_the_seeds():
    results = [row("student-first", "id", 0.5, 0.09, n_seeds=3), row("student-ce", "id", 0.4, 0.10, n_seeds=3)]
    comps = [comparison("student-first", "student-ce", "id", seeds=(3, 3),
                        accuracy=diff(0.021, -0.004, 0.046, p=0.1, p_holm=0.21, mde=0.035),
                        ece=diff(-0.031, -0.052, -0.011, p=0.004, p_holm=0.004),
                        debiased_ece=diff(-0.02, -0.04, 0.0, p=0.06),
                        smooth_ece=diff(-0.01, -0.03, 0.01, p=0.3))]
    c = by_start(check_claims(results, comps, ROLES), "FIRST beats a CE")
    assert c.verdict == "held"
    assert ("id (in-domain, seeds 3 vs 3): accuracy +0.021 [−0.004, +0.046], p_holm 0.210, MDE 0.035 / "
            "ECE −0.031 [−0.052, −0.011], p_holm 0.004, MDE 0.028 / debiased ECE −0.020 [−0.040, +0.000], "
            "p 0.060, MDE 0.028 / smooth ECE") in c.evidence
    assert "1 significant in FIRST's favour, 0 against" in c.evidence
    assert "%" not in c.evidence


def test_a_comparison_stored_the_other_way_round_is_turned_round():
    results = [row("student-first", "id", 0.5, 0.09), row("student-ce", "id", 0.4, 0.10)]
    comps = [comparison("student-ce", "student-first", "id", accuracy=diff(-0.1, -0.15, -0.05, p=0.001),
                        ece=diff(0.01, -0.01, 0.03, p=0.4))]
    c = by_start(check_claims(results, comps, ROLES), "FIRST beats a CE")
    assert c.verdict == "held" and "accuracy +0.100 [+0.050, +0.150]" in c.evidence


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


def test_trustworthy_maximization_is_judged_on_the_held_out_split_not_the_fit():
    evaluation = {"dataset": "id", "split": "test", "n": 200, "ece_raw": 0.08, "ece_reshaped": 0.06,
                  "difference": -0.02, "ci": [-0.035, -0.006], "p_value": 0.01, "mde": 0.012}
    cal = [{"model": "teacher", "method": "reshape", "temperature": 0.16, "ece_before": 0.075, "ece_after": 0.054,
            "evaluation": evaluation}]
    claims = check_claims([], [], {}, calibration=cal)
    c = by_start(claims, "Re-shaping")
    assert c.verdict == "held"
    assert "c = 0.160, fit on validation: ECE 0.075 → 0.054" in c.evidence
    assert ("on id test, n = 200 (not fitted on): ECE 0.080 → 0.060, re-shaped − raw ECE −0.020 "
            "[−0.035, −0.006], p 0.010, MDE 0.012") in c.evidence
    # A big improvement on the fit split with none on the test split is not "held".
    cal[0]["evaluation"] = {**evaluation, "difference": -0.001, "ci": [-0.01, 0.008]}
    assert by_start(check_claims([], [], {}, calibration=cal), "Re-shaping").verdict == "within noise"
    assert all(x.verdict == "not measured" for x in claims if x is not c and not x.claim.startswith("Re-"))
