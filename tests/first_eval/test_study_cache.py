"""Stage keys change exactly when a result would (issue 10).

A small real study — a tiny random Llama teacher fine-tuned on a JSONL file, a student of another
model distilled from it, a post-hoc baseline, two datasets — is run once; then one input at a time
is changed and the study re-run, and the test asserts which steps computed a stage and which were
all cache hits. Nothing is mocked: the stages train, extract, calibrate and score for real.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from first_eval.study.config import StudyConfig

MODELS = ("base", "teacher", "teacher+ts", "student")
METRICS_STEP = "metrics, bootstrap CIs and paired tests"
DATA = [{"id": f"q{i}", "question": f"Which number is {i} plus one?", "choices": [str(i + 1), str(i + 7), str(i + 3)],
         "answer": 0 if i % 3 == 0 else "B" if i % 3 == 1 else 2, "split": "train" if i < 16 else "val" if i < 20 else "test"}
        for i in range(24)]


def _write_jsonl(path: Path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_llama):
    """Two model directories (teacher base, student base) and the JSONL file."""
    from tiny_models import make_tiny_llama

    root = tmp_path_factory.mktemp("cache-keys")
    _, tok = tiny_llama
    dirs = {}
    for name, seed in (("teacher-base", 0), ("student-base", 1)):
        model = make_tiny_llama(tok, seed=seed, num_hidden_layers=2)
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        dirs[name] = root / name
    data = root / "facts.jsonl"
    _write_jsonl(data, DATA)
    return {"root": root, "data": data, **dirs}


def study(world, **changes) -> dict:
    common = {"epochs": 1, "lr": 1e-3, "batch_size": 4}
    cfg = {
        "name": "keys", "seed": 0,
        "datasets": [{"name": str(world["data"]), "split": "test", "label": "facts"},
                     {"name": "countries", "split": "test", "limit": 6, "label": "countries"}],
        "models": [
            {"name": "base", "spec": str(world["teacher-base"])},
            {"name": "teacher", "finetune": {"model": str(world["teacher-base"]), "dataset": str(world["data"]),
                                             "split": "train", **common}},
            {"name": "teacher+ts", "posthoc": {"model": "teacher", "method": "temperature", "fit": "cross", "folds": 2}},
            {"name": "student", "distill": {"student": str(world["student-base"]), "teacher": "teacher",
                                            # alpha: the tiny teacher's top-3 are ~1/49152 each, which
                                            # the store's codec rounds to 0; the CE part makes the
                                            # student's weights depend on its training items.
                                            "loss": "topk", "k": 3, "alpha": 0.5, "dataset": str(world["data"]), "split": "train",
                                            "calibration_split": "val", **common}},
        ],
        "scorer": {"template": "plain", "shots": 0, "batch_tokens": 2048},
        "metrics": {"bins": 5, "scheme": "width", "bootstrap": 0},
    }
    for path, value in changes.items():  # "models.3.distill.lr" -> cfg["models"][3]["distill"]["lr"]
        *head, last = path.split(".")
        node = cfg
        for part in head:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value
    return cfg


def run(world, cfg: dict, out: str = "run"):
    """Run a study in-process; return {step title: "computed" | "hit" | None (no cache stage)}."""
    from first_eval.study.runner import StudyRunner

    runner = StudyRunner(StudyConfig.from_dict(cfg), world["root"] / out, progress=False,
                         stage_root=world["root"] / "stages")
    runner.run()
    steps = {}
    for title, events in runner.log:
        steps[title] = None if not events else "computed" if any(e.computed for e in events) else "hit"
    return steps, runner


def computed(steps: dict) -> set[str]:
    return {t for t, s in steps.items() if s == "computed"}


@pytest.fixture(scope="module")
def first_run(world):
    # The stages live under the test's own root; $FIRST_HOME (conversions, digest memos) is the session's.
    return run(world, study(world))


def titles(world) -> dict[str, str]:
    tb, data = world["teacher-base"], world["data"]
    out = {"teacher": f"fine-tune teacher from {tb} on {data}/train", "student": "distill student (topk) from teacher"}
    for ds in ("facts", "countries"):
        for m in ("base", "teacher", "student"):
            out[f"{m}@{ds}"] = f"score {m} on {ds}"
    out["posthoc"] = "teacher+ts: temperature cross-fitted on each dataset (oracle), on teacher's predictions"
    out["metrics"] = METRICS_STEP
    return out


def expect(world, *names: str) -> set[str]:
    t = titles(world)
    return {t[n] for n in names}


def test_the_first_run_computes_every_stage_and_the_second_none(world, first_run):
    steps, _ = first_run
    assert computed(steps) == set(titles(world).values())
    again, runner = run(world, study(world))
    assert computed(again) == set()
    assert all(state == "hit" for t, state in again.items() if t in titles(world).values())
    info = json.loads((world["root"] / "run" / "run.json").read_text())
    assert info["stages"] and not any(s["computed"] for s in info["stages"])


def test_editing_one_scored_answer_rescores_that_dataset_only(world, first_run):
    edited = [dict(r) for r in DATA]
    edited[20]["answer"] = 1  # a test item: the scored split
    _write_jsonl(world["data"], edited)
    try:
        steps, _ = run(world, study(world))
    finally:
        _write_jsonl(world["data"], DATA)
    assert computed(steps) == expect(world, "base@facts", "teacher@facts", "student@facts", "posthoc", "metrics")


def test_editing_one_training_item_retrains_and_rescores_what_it_trained(world, first_run):
    edited = [dict(r) for r in DATA]
    edited[3]["question"] = "Which number is 3 plus one, really?"
    _write_jsonl(world["data"], edited)
    try:
        steps, _ = run(world, study(world))
    finally:
        _write_jsonl(world["data"], DATA)
    # The teacher, its store (the student's training data) and the student change; base does not.
    assert computed(steps) == expect(world, "teacher", "student", "teacher@facts", "student@facts",
                                     "teacher@countries", "student@countries", "posthoc", "metrics")


def test_a_model_file_with_other_weights_reruns_what_uses_that_model(world, first_run, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    weights = world["student-base"] / "model.safetensors"
    original = weights.read_bytes()
    tensors = load_file(weights)
    name = sorted(tensors)[-1]
    tensors[name] = tensors[name] + 0.01 * torch.ones_like(tensors[name])
    save_file(tensors, weights, metadata={"format": "pt"})
    try:
        steps, _ = run(world, study(world))
    finally:
        weights.write_bytes(original)
    assert computed(steps) == expect(world, "student", "student@facts", "student@countries", "metrics")


def test_a_copied_model_directory_is_the_same_model(world, first_run):
    copy = world["root"] / "student-copy"
    shutil.copytree(world["student-base"], copy)
    steps, _ = run(world, study(world, **{"models.3.distill.student": str(copy)}))
    assert computed(steps) == set()  # same bytes, other path and mtimes: same key


def test_a_recipe_field_reruns_that_model_and_its_scores(world, first_run):
    steps, _ = run(world, study(world, **{"models.3.distill.lr": 2e-3}))
    assert computed(steps) == expect(world, "student", "student@facts", "student@countries", "metrics")


def test_the_seed_reruns_training_and_seeded_subsets_only(world, first_run):
    steps, _ = run(world, study(world, seed=1))
    # Training and the post-hoc folds are seeded; the `limit` subset of countries is drawn with
    # the seed; the unlimited JSONL split is the same items: the base model's score on it is reused.
    assert titles(world)["base@facts"] not in computed(steps)
    assert expect(world, "teacher", "student", "base@countries", "posthoc", "metrics") <= computed(steps)


def test_a_dataset_limit_rescores_that_dataset_only(world, first_run):
    steps, _ = run(world, study(world, **{"datasets.1.limit": 5}))
    assert computed(steps) == expect(world, "base@countries", "teacher@countries", "student@countries", "posthoc",
                                     "metrics")


def test_two_distill_recipes_differing_only_in_limit_train_on_their_own_stores(world, first_run):
    cfg = study(world)
    twin = json.loads(json.dumps(cfg["models"][3]))
    twin["name"] = "student-12"
    twin["distill"]["limit"] = 12
    cfg["models"].append(twin)
    _, runner = run(world, cfg)
    stores = runner.state.stores
    assert len(stores) == 2  # one store per limit, each keyed by its own stage key
    manifests = [json.loads((s.path / "store" / "manifest.json").read_text()) for s in stores.values()]
    assert sorted(m["n_sequences"] for m in manifests) == [12, 16]


def test_a_stage_format_version_bump_recomputes_that_kind_only(world, first_run, monkeypatch):
    from first_eval import digest

    monkeypatch.setitem(digest.STAGE_VERSIONS, "score", digest.STAGE_VERSIONS["score"] + 1)
    steps, _ = run(world, study(world))
    scores = {v for k, v in titles(world).items() if "@" in k}
    # The re-scored predictions are byte-identical, so the post-hoc and metrics stages keyed by
    # their digests hit.
    assert computed(steps) == scores


def metrics_of(world, out: str = "run") -> dict:
    return json.loads((world["root"] / out / "metrics.json").read_text())


def test_an_unchanged_rerun_reads_the_metrics_and_rebuilds_only_the_report(world, first_run):
    before = metrics_of(world)
    steps, runner = run(world, study(world), out="run-again")
    assert computed(steps) == set()
    events = dict(runner.log)[METRICS_STEP]
    assert len(events) == 1 and events[0].stage.startswith("metrics-") and not events[0].computed
    assert metrics_of(world, "run-again") == before
    # The report is this run's: it names the directory it was written for.
    assert "Run `run-again`" in (world["root"] / "run-again" / "report.md").read_text()


def test_the_metrics_recompute_when_a_predictions_file_changes(world, first_run):
    _, runner = first_run
    path = runner.state.predictions[("base", "facts")]
    original = path.read_bytes()
    rows = [json.loads(line) for line in original.decode().splitlines()]
    for r in rows:  # every answer right and certain
        r["probs"] = [1.0 if k == r["label"] else 0.0 for k in range(len(r["probs"]))]
    _write_jsonl(path, rows)
    try:
        steps, _ = run(world, study(world), out="edited")
    finally:
        path.write_bytes(original)
    # The score stage is served as it lies on disk (its key is of its inputs); the metrics read it anew.
    assert computed(steps) == expect(world, "metrics")
    row, = [r for r in metrics_of(world, "edited")["results"] if (r["model"], r["dataset"]) == ("base", "facts")]
    assert row["accuracy"] == 1.0 and row["ece"] == 0.0
    steps, _ = run(world, study(world), out="edited")  # the original bytes again: the original metrics
    assert computed(steps) == set()
    assert metrics_of(world, "edited")["results"] == metrics_of(world)["results"]


@pytest.mark.parametrize("change", [{"metrics.scheme": "mass"}, {"metrics.bootstrap": 5},
                                    {"comparisons": [["teacher", "base"]]}, {"datasets.0.label": "facts-2"}],
                         ids=["scheme", "bootstrap", "comparisons", "dataset-name"])
def test_a_metrics_setting_recomputes_the_metrics_only(world, first_run, change):
    steps, _ = run(world, study(world, **change), out="settings")
    assert computed(steps) == expect(world, "metrics")
    got = metrics_of(world, "settings")
    if "metrics.bootstrap" in change:
        assert all("ece_ci" in r for r in got["results"])
    if "comparisons" in change:
        assert [(c["model_a"], c["model_b"], c["dataset"]) for c in got["comparisons"]] == [
            ("teacher", "base", "facts"), ("teacher", "base", "countries")]
    if "datasets.0.label" in change:  # the rows carry the names: a renamed dataset is not served the old ones
        assert {r["dataset"] for r in got["results"]} == {"facts-2", "countries"}
    steps, _ = run(world, study(world, **change), out="settings")
    assert computed(steps) == set()


@pytest.mark.parametrize("field", ["bins", "seed"])
def test_the_bins_and_the_seed_are_in_the_metrics_key(world, first_run, field):
    """Both also feed training stages (the store's ECE, every seeded stage), so a re-run could not
    tell the metrics stage's key from theirs: the stage is looked up on the first run's predictions."""
    from dataclasses import replace

    from first_eval.study.outputs import metrics_stage

    _, runner = first_run
    state = replace(runner.state, events=[])
    cfg = state.cfg
    same = metrics_stage(state)
    other = (replace(cfg, metrics=replace(cfg.metrics, bins=cfg.metrics.bins + 1)) if field == "bins"
             else replace(cfg, seed=cfg.seed + 1))
    changed = metrics_stage(replace(state, cfg=other))
    assert [e.computed for e in state.events] == [False, True]
    assert changed.key != same.key and changed.done


def test_the_package_version_is_in_every_key(monkeypatch):
    import first_eval
    from first_eval.study.cache import stage_key

    a, _ = stage_key("score", {"x": 1})
    monkeypatch.setattr(first_eval, "__version__", "9.9.9")
    b, record = stage_key("score", {"x": 1})
    assert a != b and record["code"]["package"] == "9.9.9"


def test_different_inputs_never_share_a_key(world, first_run):
    """Every stage directory of all the runs above holds its own inputs: no two records share a key."""
    from first_eval.digest import content_hash

    seen: dict[str, str] = {}
    for d in (world["root"] / "stages").iterdir():
        record = json.loads((d / "inputs.json").read_text())
        assert d.name == f"{record['stage']}-{content_hash(record)}"  # the key is the digest of the record
        seen[d.name] = json.dumps(record, sort_keys=True)
    assert len(seen) > 20 and len(set(seen.values())) == len(seen)  # distinct records, distinct keys


def test_few_shot_examples_come_from_another_split_of_the_scored_dataset(world):
    cfg = study(world)
    cfg["models"] = cfg["models"][:1]
    cfg["datasets"] = cfg["datasets"][:1]
    cfg["scorer"]["shots"] = 2
    _, runner = run(world, cfg, out="shots")
    import pandas as pd

    frame = pd.read_parquet(world["root"] / "shots" / "predictions.parquet")
    train = {r["question"] for r in DATA if r["split"] == "train"}
    scored = {r["question"] for r in DATA if r["split"] == "test"}
    for prompt in frame["prompt"]:
        shown = [q for q in train | scored if q in prompt]
        assert len(shown) == 3 and sum(q in train for q in shown) == 2  # two train examples + the question


def test_few_shot_examples_on_a_dataset_without_another_split_is_one_clear_error(world):
    from first_eval.errors import UserError

    cfg = study(world)
    cfg["models"] = cfg["models"][:1]
    cfg["datasets"] = [{"name": "mmlu", "split": "test", "limit": 4}]
    cfg["scorer"]["shots"] = 1
    with pytest.raises(UserError, match="few-shot examples for 'mmlu' need a split other than the scored one"):
        run(world, cfg, out="shots-mmlu")
    assert not (world["root"] / "shots-mmlu").exists()
