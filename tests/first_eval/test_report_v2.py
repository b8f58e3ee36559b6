"""The seed-aware report: every verdict of every claim, Holm-adjusted p deciding, validation
datasets never counted, and a report built from a small hand-made run directory."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from first_eval.report.claims import VERDICTS, check_claims

ROLES = {"id": "in-domain", "ood": "near-ood", "val": "validation"}


# ---------------------------------------------------------------------------- builders
def row(model, dataset, *, accuracy=0.5, ece=0.1, gap=None, gap_ci=None, n_seeds=1):
    return {"model": model, "dataset": dataset, "n": 100, "n_seeds": n_seeds, "accuracy": accuracy, "ece": ece,
            "confidence_gap": gap, "confidence_gap_ci": gap_ci}


def diff(d, *, p, p_holm=None, width=0.02, mde=0.03):
    """A difference whose CI is consistent with its p (excludes 0 when p < 0.05)."""
    lo, hi = (d - width, d + width) if p < 0.05 else (min(d, 0) - width, max(d, 0) + width)
    out = {"difference": d, "ci": [lo, hi], "p_value": p, "se": mde / 2.8, "mde": mde}
    if p_holm is not None:
        out["p_holm"] = p_holm
    return out


def comparison(a, b, dataset, **differences):
    return {"model_a": a, "model_b": b, "dataset": dataset, "n": 100, "n_resamples": 1000,
            "n_seeds_a": 3, "n_seeds_b": 3, "differences": differences}


SIG, NS = dict(p=0.001, p_holm=0.002), dict(p=0.4, p_holm=0.8)


def claim(claims, start):
    return next(c for c in claims if c.claim.startswith(start))


# ---------------------------------------------------------------------------- claim 1
def _teacher_world(ece_effects, gaps):
    """base and teacher on id and ood; ece_effects[d] = (difference, significance), gaps[d] = gap CI."""
    results, comps = [], []
    for d in ("id", "ood"):
        results += [row("base", d, ece=0.1), row("teacher", d, ece=0.1 + ece_effects[d][0],
                                                 gap=sum(gaps[d]) / 2, gap_ci=list(gaps[d]))]
        comps.append(comparison("teacher", "base", d, ece=diff(ece_effects[d][0], **ece_effects[d][1])))
    return results, comps


@pytest.mark.parametrize("ece_effects, gaps, verdict", [
    ({"id": (0.05, SIG), "ood": (0.08, SIG)}, {"id": (0.02, 0.1), "ood": (0.05, 0.2)}, "held"),
    ({"id": (0.05, SIG), "ood": (0.08, SIG)}, {"id": (0.02, 0.1), "ood": (-0.01, 0.2)}, "mixed"),
    ({"id": (0.05, SIG), "ood": (0.01, NS)}, {"id": (0.02, 0.1), "ood": (0.05, 0.2)}, "mixed"),
    ({"id": (-0.05, SIG), "ood": (-0.03, SIG)}, {"id": (0.02, 0.1), "ood": (0.05, 0.2)}, "did not hold"),
    ({"id": (0.05, SIG), "ood": (0.08, SIG)}, {"id": (-0.1, -0.02), "ood": (-0.05, 0.01)}, "did not hold"),
    ({"id": (0.05, NS), "ood": (0.08, NS)}, {"id": (0.02, 0.1), "ood": (0.05, 0.2)}, "within noise"),
])
def test_mis_calibration_verdicts(ece_effects, gaps, verdict):
    results, comps = _teacher_world(ece_effects, gaps)
    assert claim(check_claims(results, comps, ROLES), "Fine-tuning").verdict == verdict


def test_mis_calibration_not_measured_without_teacher_or_test():
    results, comps = _teacher_world({"id": (0.05, SIG), "ood": (0.08, SIG)}, {"id": (0.02, 0.1), "ood": (0.05, 0.2)})
    assert claim(check_claims(results, [], ROLES), "Fine-tuning").verdict == "not measured"
    no_teacher = [r for r in results if r["model"] != "teacher"]
    c = claim(check_claims(no_teacher, comps, ROLES), "Fine-tuning")
    assert c.verdict == "not measured" and "missing" in c.evidence


# ---------------------------------------------------------------------------- claim 2
def test_concentrated_knowledge_not_measured_without_the_study():
    assert claim(check_claims([], [], ROLES), "The teacher's top-5").verdict == "not measured"


# ---------------------------------------------------------------------------- claim 3
def _cal(temperature=0.2, difference=-0.02, ci=(-0.03, -0.01), evaluation=True, method="reshape"):
    entry = {"model": "teacher", "store": "s", "method": method, "temperature": temperature,
             "ece_before": 0.08, "ece_after": 0.05 if temperature is not None else 0.08,
             "grid": [[0.1, 0.07], [0.2, 0.05]]}
    if evaluation:
        entry["evaluation"] = {"dataset": "id", "split": "test", "n": 100, "ece_raw": 0.09,
                               "ece_reshaped": 0.09 + difference, "difference": difference, "ci": list(ci),
                               "p_value": 0.01, "mde": 0.015}
    return entry


@pytest.mark.parametrize("entries, verdict", [
    ([_cal()], "held"),
    ([_cal(difference=0.02, ci=(0.01, 0.03))], "did not hold"),
    ([_cal(difference=-0.005, ci=(-0.02, 0.01))], "within noise"),
    ([_cal(temperature=None)], "reduced to top-k KD"),
    ([_cal(evaluation=False)], "not measured"),
    ([], "not measured"),
    ([_cal(method="temperature")], "not measured"),  # not a re-shaping
    ([_cal(), _cal(difference=0.02, ci=(0.01, 0.03))], "mixed"),
])
def test_trustworthy_maximization_verdicts(entries, verdict):
    c = claim(check_claims([], [], ROLES, calibration=entries), "Re-shaping")
    assert c.verdict == verdict
    if verdict == "reduced to top-k KD":
        assert c.evidence == ("teacher: no c in the grid beat the raw teacher on validation (ECE 0.080); "
                              "FIRST is top-k KD for this teacher")


# ---------------------------------------------------------------------------- claims 4-6
OTHERS = {"student-ce": "FIRST beats a CE-fine-tuned", "student-topk": "FIRST beats top-k KD",
          "student-ce+ts": "FIRST beats a CE student with temperature"}


def _students(other, effects):
    """first and other on id and ood: effects[d] = {metric: (difference, significance)}."""
    results, comps = [], []
    for d, by_metric in effects.items():
        results += [row("student-first", d, n_seeds=3), row(other, d, n_seeds=3)]
        comps.append(comparison("student-first", other, d,
                                **{m: diff(v, **s) for m, (v, s) in by_metric.items()},
                                debiased_ece=diff(-0.01, **NS), smooth_ece=diff(-0.01, **NS)))
    return results, comps


CASES = [
    ({"id": {"accuracy": (0.03, SIG), "ece": (-0.01, NS)}, "ood": {"accuracy": (0.0, NS), "ece": (0.0, NS)}}, "held"),
    ({"id": {"accuracy": (0.0, NS), "ece": (-0.03, SIG)}, "ood": {"accuracy": (0.0, NS), "ece": (0.0, NS)}}, "held"),
    ({"id": {"accuracy": (-0.03, SIG), "ece": (0.0, NS)}, "ood": {"accuracy": (0.0, NS), "ece": (0.02, SIG)}},
     "did not hold"),
    ({"id": {"accuracy": (0.03, SIG), "ece": (0.0, NS)}, "ood": {"accuracy": (0.0, NS), "ece": (0.02, SIG)}}, "mixed"),
    ({"id": {"accuracy": (0.01, NS), "ece": (-0.01, NS)}, "ood": {"accuracy": (0.02, NS), "ece": (0.0, NS)}},
     "within noise"),
]


@pytest.mark.parametrize("other", list(OTHERS))
@pytest.mark.parametrize("effects, verdict", CASES)
def test_first_versus_verdicts(other, effects, verdict):
    results, comps = _students(other, effects)
    c = claim(check_claims(results, comps, ROLES), OTHERS[other])
    assert c.verdict == verdict
    if verdict == "within noise":
        assert "could have detected about 0.030 accuracy and 0.030 ECE" in c.evidence
    assert "debiased ECE" in c.evidence and "smooth ECE" in c.evidence
    assert "seeds 3 vs 3" in c.evidence


@pytest.mark.parametrize("other", list(OTHERS))
def test_first_versus_not_measured(other):
    results, comps = _students(other, CASES[0][0])
    c = claim(check_claims([r for r in results if r["model"] != other], [], ROLES), OTHERS[other])
    assert c.verdict == "not measured" and f"{other} missing" in c.evidence
    c = claim(check_claims(results, [], ROLES), OTHERS[other])
    assert c.verdict == "not measured" and "no paired comparison" in c.evidence


def test_first_versus_topk_is_reduced_when_no_c_beat_the_raw_teacher():
    results, comps = _students("student-topk", CASES[0][0])
    claims = check_claims(results, comps, ROLES, calibration=[_cal(temperature=None)])
    c = claim(claims, "FIRST beats top-k KD")
    assert c.verdict == "reduced to top-k KD"
    assert c.evidence == "student-first is student-topk: no c beat the raw teacher"  # no comparison shown
    # The other claims still compare (FIRST is then top-k KD against CE).
    assert claim(claims, "Re-shaping").verdict == "reduced to top-k KD"


def test_every_verdict_of_the_vocabulary_is_reachable():
    seen = set()
    for effects, verdict in CASES:
        results, comps = _students("student-ce", effects)
        seen.add(claim(check_claims(results, comps, ROLES), OTHERS["student-ce"]).verdict)
    seen.add(claim(check_claims([], [], ROLES), "FIRST beats a CE").verdict)
    seen.add(claim(check_claims([], [], ROLES, calibration=[_cal(temperature=None)]), "Re-shaping").verdict)
    assert seen == set(VERDICTS)


# ---------------------------------------------------------------------------- Holm decides
def test_the_holm_adjusted_p_decides_not_the_raw_one():
    effects = {"id": {"accuracy": (0.03, dict(p=0.03, p_holm=0.09)), "ece": (0.0, NS)}}
    results, comps = _students("student-ce", effects)
    c = claim(check_claims(results, comps, ROLES), OTHERS["student-ce"])
    assert c.verdict == "within noise" and "p_holm 0.090" in c.evidence
    effects["id"]["accuracy"] = (0.03, dict(p=0.03, p_holm=0.03))
    results, comps = _students("student-ce", effects)
    assert claim(check_claims(results, comps, ROLES), OTHERS["student-ce"]).verdict == "held"
    # The same for the teacher against the base model.
    results, comps = _teacher_world({"id": (0.05, dict(p=0.03, p_holm=0.09)), "ood": (0.08, dict(p=0.02, p_holm=0.09))},
                                    {"id": (0.02, 0.1), "ood": (0.05, 0.2)})
    assert claim(check_claims(results, comps, ROLES), "Fine-tuning").verdict == "within noise"
    # Without p_holm (an old run), the raw p is the one there is.
    for c_ in comps:
        del c_["differences"]["ece"]["p_holm"]
    assert claim(check_claims(results, comps, ROLES), "Fine-tuning").verdict == "held"


# ---------------------------------------------------------------------------- validation never counts
def test_validation_rows_are_never_counted():
    effects = {"id": {"accuracy": (0.0, NS), "ece": (0.0, NS)},
               "val": {"accuracy": (0.2, SIG), "ece": (-0.1, SIG)}}
    results, comps = _students("student-ce", effects)
    c = claim(check_claims(results, comps, ROLES), OTHERS["student-ce"])
    assert c.verdict == "within noise" and "val" not in c.evidence
    only_val = {"val": effects["val"]}
    results, comps = _students("student-ce", only_val)
    assert claim(check_claims(results, comps, ROLES), OTHERS["student-ce"]).verdict == "not measured"
    # A validation set where the teacher looks better calibrated than the base does not make "mixed".
    results, comps = _teacher_world({"id": (0.05, SIG), "ood": (0.08, SIG)}, {"id": (0.02, 0.1), "ood": (0.05, 0.2)})
    results += [row("base", "val", ece=0.2), row("teacher", "val", ece=0.05, gap=-0.1, gap_ci=[-0.2, -0.05])]
    comps.append(comparison("teacher", "base", "val", ece=diff(-0.15, **SIG)))
    c = claim(check_claims(results, comps, ROLES), "Fine-tuning")
    assert c.verdict == "held" and "val" not in c.evidence


# ---------------------------------------------------------------------------- the report
NASTY = "<b>id</b>|x"


def _predictions(models, datasets, rng):
    rows = []
    for m, sharp in models.items():
        for d in datasets:
            for i in range(30):
                label = i % 4
                logits = rng.normal(size=4)
                logits[label] += sharp * (i % 3 != 0)
                p = np.exp(logits) / np.exp(logits).sum()
                rows.append({"model": m, "dataset": d, "id": f"q{i}", "label": label, "probs": p.tolist()})
    return rows


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from first_eval import rundir
    from first_eval.arms import compute_arm_comparisons, compute_arm_results, holm_adjust
    from first_eval.fileio import write_json_atomic
    from first_eval.predictions import read_predictions, write_predictions
    from first_eval.results import compute_results

    root = tmp_path_factory.mktemp("runs") / "v2-run"
    root.mkdir()
    datasets = [NASTY, "ood", "val"]
    roles = {NASTY: "in-domain", "ood": "near-ood", "val": "validation"}
    models = {"base": 0.5, "teacher": 3.0, "student-first@0": 2.0, "student-first@1": 2.1,
              "student-ce@0": 1.5, "student-ce@1": 1.6}
    write_predictions(_predictions(models, datasets, np.random.default_rng(0)), root / rundir.PREDICTIONS_FILE)
    frame = read_predictions(root / rundir.PREDICTIONS_FILE)
    settings = dict(n_bins=10, scheme="width", bootstrap=40, seed=0)
    results = compute_arm_results(frame, **settings)
    comparisons = []
    for a, b in (("teacher", "base"), ("student-first", "student-ce")):
        comparisons += compute_arm_comparisons(frame, a, b, **settings)
    holm_adjust(comparisons)
    write_json_atomic(root / rundir.METRICS_FILE, {
        "results": results, "replicas": compute_results(frame, **settings), "comparisons": comparisons,
        "roles": roles, "metadata": {"bins": 10, "scheme": "width", "bootstrap": 40, "command": "first-eval metrics"},
        "environment": {"cpu": "test-cpu", "threads": 2, "torch": "2.x",
                        "deterministic": {"algorithms": True, "cudnn": False}}})
    traj = []
    for step, (acc, ece, gap), sel in ((0, (0.3, 0.05, 0.0), []), (50, (0.8, 0.06, 0.02), ["val-accuracy"]),
                                       (100, (0.81, 0.12, 0.09), ["last"])):
        for d in (NASTY, "val"):
            traj.append({"model": "teacher", "step": step, "dataset": d, "role": roles[d], "checkpoint": f"c{step}",
                         "accuracy": acc, "ece": ece, "debiased_ece": ece - 0.01, "smooth_ece": ece, "nll": 1.0,
                         "brier": 0.5, "mean_confidence": acc + gap, "confidence_gap": gap,
                         "accuracy_ci": [acc - 0.05, acc + 0.05], "ece_ci": [ece - 0.02, ece + 0.02],
                         "debiased_ece_ci": [ece - 0.03, ece + 0.01], "confidence_gap_ci": [gap - 0.03, gap + 0.03],
                         "selected_by": sel})
    write_json_atomic(root / rundir.TRAJECTORY_FILE, traj)
    write_json_atomic(root / rundir.CALIBRATION_FILE, [_cal()])
    rundir.write_run_json(root, {"study": "v2 <study>", "created": "2026-01-01T00:00:00+00:00", "seed": 0,
                                 "config_hash": "abc", "versions": {"python": "3.11"},
                                 "datasets": [{"name": d, "role": roles[d]} for d in datasets]})
    from first_eval.report import build_report

    md, html = build_report(root)
    return {"root": root, "md": md.read_text(), "html": html.read_text()}


def test_report_leads_with_the_verdicts_then_the_trajectory_then_the_tables(run_dir):
    html, md = run_dir["html"], run_dir["md"]
    verdicts = html.index("What held and what did not")
    trajectory = html.index("<h3>The mis-calibration trajectory</h3>")
    assert verdicts < trajectory < html.index("<h3>Calibration against accuracy</h3>") < html.index("Headline metrics")
    assert "<details" in html and "Paired differences" in html
    assert md.index("## What held and what did not") < md.index("## Headline metrics")
    verdict_lines = [line for line in md.splitlines() if line.startswith("- **")]
    assert len(verdict_lines) == 6 and md.index(verdict_lines[0]) < md.index("## Headline metrics")
    assert all(re.match(r"- \*\*(held|did not hold|mixed|within noise|not measured|reduced to top-k KD)\*\* — ",
                        line) for line in verdict_lines)
    assert "trajectory" not in md.lower().split("## ")[0]  # the header says nothing of optional parts


def test_report_tables_validation_seed_spread_comparisons_and_environment(run_dir):
    md = run_dir["md"]
    sections = {s.split("\n", 1)[0]: s for s in md.split("\n## ")[1:]}
    headline = sections["Headline metrics (95% CIs)"]
    assert "| val |" not in headline and "| ood |" in headline
    assert "| val |" in sections["Validation set (fitting and selection only)"]
    spread = sections["Seed spread"]
    assert "| student-first |" in spread and "| 0, 1 |" in spread and "| teacher |" not in spread
    comp = sections["Paired comparisons (same items, paired bootstrap)"]
    assert "p_holm" in comp and "MDE" in comp and "2 vs 2" in comp
    repro = sections["Reproducibility"]
    assert "- cpu: test-cpu" in repro and "- deterministic: algorithms=True, cudnn=False" in repro
    assert "first-eval report" in repro
    # Cells read "0.812 [0.780, 0.840]"; the confidence gap is signed.
    first_row = next(line for line in headline.splitlines() if line.startswith("| student-first | ood"))
    cells = [c.strip() for c in first_row.strip("|").split("|")]
    assert cells[4] == "2 (0, 1)"
    assert re.fullmatch(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", cells[5])
    assert re.fullmatch(r"[+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]", cells[9])
    assert "Reproducibility" in run_dir["html"] and "test-cpu" in run_dir["html"]


def test_report_escapes_dataset_text(run_dir):
    html, md = run_dir["html"], run_dir["md"]
    assert "<b>id</b>" not in html and "&lt;b&gt;id&lt;/b&gt;" in html and "<study>" not in html
    assert "<b>id</b>" not in md and "&lt;b&gt;id&lt;/b&gt;\\|x" in md


def test_report_claims_read_the_run(run_dir):
    md = run_dir["md"]
    lines = [line for line in md.splitlines() if line.startswith("- **")]
    assert any("Re-shaping" in line and line.startswith("- **held**") for line in lines)
    assert any("top-k KD without" in line and "not measured" in line for line in lines)


def test_an_old_run_directory_still_renders(tmp_path):
    from first_eval import rundir
    from first_eval.fileio import write_json_atomic
    from first_eval.predictions import read_predictions, write_predictions
    from first_eval.report import build_report
    from first_eval.results import compute_comparisons, compute_results

    root = tmp_path / "old"
    root.mkdir()
    write_predictions(_predictions({"base": 0.5, "teacher": 3.0}, ["id"], np.random.default_rng(1)),
                      root / rundir.PREDICTIONS_FILE)
    frame = read_predictions(root / rundir.PREDICTIONS_FILE)
    settings = dict(n_bins=10, scheme="width", bootstrap=30, seed=0)
    write_json_atomic(root / rundir.METRICS_FILE, {
        "results": compute_results(frame, **settings),
        "comparisons": compute_comparisons(frame, "teacher", "base", **settings), "metadata": {}})
    write_json_atomic(root / rundir.TRAJECTORY_FILE, [{"model": "teacher", "step": s, "dataset": "id",
                                                      "accuracy": 0.5, "ece": 0.1, "mean_confidence": 0.6}
                                                     for s in (0, 10)])
    write_json_atomic(root / rundir.CALIBRATION_FILE, [{"model": "teacher", "method": "reshape", "temperature": 0.2,
                                                        "ece_before": 0.1, "ece_after": 0.05}])
    rundir.write_run_json(root, {"study": "old", "datasets": [{"name": "id", "role": "in-domain"}]})
    md, html = build_report(root)
    text = md.read_text()
    assert "## Headline metrics" in text and "Seed spread" not in text
    assert "not evaluated" in text  # the calibration entry has no held-out evaluation
    assert json.loads((root / rundir.METRICS_FILE).read_text())["results"]  # untouched
    assert "The mis-calibration trajectory" in html.read_text()


def test_with_confidence_averages_an_arms_replicas_and_keeps_a_written_gap():
    from types import SimpleNamespace

    from first_eval.predictions import to_frame
    from first_eval.report import with_confidence

    frame = to_frame([{"model": f"m@{s}", "dataset": "d", "id": str(i), "label": 0,
                       "probs": [0.9, 0.1] if s == 0 else [0.7, 0.3]} for s in (0, 1) for i in range(4)])
    run = SimpleNamespace(results=[{"model": "m", "dataset": "d", "accuracy": 1.0}], predictions=frame)
    row, = with_confidence(run)
    assert row["mean_confidence"] == pytest.approx(0.8) and row["confidence_gap"] == pytest.approx(-0.2)
    run.results[0]["confidence_gap"] = 0.5  # written by the runner (with its CI): kept
    assert with_confidence(run)[0]["confidence_gap"] == 0.5


# ---------------------------------------------------------------------------- the trajectory figure
def _traj(model="teacher", ci=True):
    rows = []
    for step, acc, ece, gap, sel in ((0, 0.3, 0.05, 0.0, []), (50, 0.8, 0.06, 0.02, ["val-accuracy"]),
                                     (80, 0.8, 0.05, 0.01, ["val-ece"]), (100, 0.81, 0.12, 0.09, ["last"])):
        for d, role in (("id", "in-domain"), ("val", "validation")):
            r = {"model": model, "step": step, "dataset": d, "role": role, "accuracy": acc, "ece": ece,
                 "debiased_ece": ece - 0.01, "confidence_gap": gap, "selected_by": sel}
            if ci:
                r.update(accuracy_ci=[acc - 0.05, acc + 0.05], ece_ci=[ece - 0.02, ece + 0.02],
                         debiased_ece_ci=[ece - 0.03, ece], confidence_gap_ci=[gap - 0.03, gap + 0.03])
            rows.append(r)
    return rows


def test_trajectory_figure_one_line_per_dataset_with_bands_and_selection_markers():
    from first_eval import plots

    fig = plots.trajectory_figure(_traj())
    json.loads(fig.to_json())
    titles = [a.text for a in fig.layout.annotations][:4]
    assert titles == ["accuracy", "ECE", "debiased ECE", "confidence − accuracy"]
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    bands = [t for t in fig.data if t.fill == "toself"]
    assert len(lines) == 8 and len(bands) == 8  # 4 panels × 2 datasets, each with its CI band
    first = [t for t in lines if t.xaxis == "x"]
    assert [t.name for t in first] == ["id (in-domain)", "val (validation)"]
    assert first[0].line.color != first[1].line.color  # one model: coloured by dataset
    assert list(first[0].y) == [0.3, 0.8, 0.8, 0.81]
    band = next(t for t in bands if t.xaxis == "x2")
    assert list(band.y) == pytest.approx([0.07, 0.08, 0.07, 0.14, 0.10, 0.03, 0.04, 0.03])
    texts = [a.text for a in fig.layout.annotations]
    assert {"shipped: best val accuracy", "early stop: lowest val ECE", "last checkpoint"} <= set(texts)
    markers = [s for s in fig.layout.shapes if s.line.dash == "dash"]
    assert sorted({s.x0 for s in markers}) == [50, 80, 100] and len(markers) == 3 * 4  # every panel


def test_trajectory_figure_old_rows_and_several_models():
    from first_eval import plots

    old = [{"model": "t", "dataset": "d", "step": s, "accuracy": a, "ece": 0.1, "mean_confidence": a + 0.1}
           for s, a in ((0, 0.3), (10, 0.6))]
    fig = plots.trajectory_figure(old)
    assert not [t for t in fig.data if t.fill == "toself"]  # no CIs: no bands
    assert not [s for s in fig.layout.shapes if s.line.dash == "dash"]  # no selected_by: no markers
    gap = next(t for t in fig.data if t.xaxis == "x3")  # confidence − accuracy, derived
    assert list(gap.y) == pytest.approx([0.1, 0.1])
    two = plots.trajectory_figure(_traj("a", ci=False) + _traj("b", ci=False), colors={"a": "#111111"})
    first = [t for t in two.data if t.xaxis == "x" and t.mode == "lines+markers"]
    assert {t.line.color for t in first if t.name.startswith("a ·")} == {"#111111"}  # coloured by model
    assert {t.line.dash for t in first if t.name.startswith("a ·")} == {"solid", "dash"}  # datasets by dash
    assert any(a.text.startswith("a: shipped") for a in two.layout.annotations)
