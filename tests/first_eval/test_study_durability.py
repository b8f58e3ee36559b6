"""Studies under stress, with real processes: two runs sharing one ``$FIRST_HOME``, locks left by
killed processes, ``kill -9`` at chosen points followed by a resume, and a re-run into an existing
run directory (issue 10, items 3–5)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def small_study(model_dir: Path, *, trajectory: bool = True) -> dict:
    cfg = {
        "name": "small", "seed": 0,
        "datasets": [{"name": "countries", "split": "test", "limit": 8}],
        "models": [
            {"name": "base", "spec": str(model_dir)},
            {"name": "teacher", "finetune": {"model": str(model_dir), "dataset": "countries", "limit": 16,
                                             "epochs": 1, "lr": 1e-3, "batch_size": 4, "save_every": 2}},
            {"name": "teacher+ts", "posthoc": {"model": "teacher", "method": "temperature", "fit": "cross", "folds": 2}},
        ],
        "scorer": {"template": "plain", "shots": 0, "batch_tokens": 64},  # several batches per dataset
        "metrics": {"bins": 5, "scheme": "width", "bootstrap": 20},
        "comparisons": [["teacher", "base"]],
    }
    if trajectory:
        cfg["trajectory"] = {"model": "teacher", "dataset": "countries"}
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def launch(config: Path, out: Path, home: Path, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "first_eval.cli", "run", "--config", str(config), "--out", str(out),
                             "--no-progress"], env=dict(ENV, FIRST_HOME=str(home), **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(config: Path, out: Path, home: Path, **env) -> subprocess.CompletedProcess:
    proc = launch(config, out, home, **env)
    stdout, stderr = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir):
    """An uninterrupted run of the small study: the numbers every interrupted one must end with."""
    root = tmp_path_factory.mktemp("durability")
    config = write_config(root / "small.yaml", small_study(tiny_model_dir))
    proc = run(config, root / "ref", root / "home")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"root": root, "config": config, "metrics": metrics(root / "ref"), "log": proc.stderr}


@pytest.mark.parametrize("point", ["score-batch#2", "train-step#3", "metrics", "publish"])
def test_killed_at_any_point_a_resumed_run_ends_with_the_same_metrics(reference, tmp_path, point):
    config, out, home = reference["config"], tmp_path / "run", tmp_path / "home"
    if point == "publish":  # the swap needs an earlier run in place
        first = run(config, out, home)
        assert first.returncode == 0, first.stderr[-3000:]
    killed = run(config, out, home, FIRST_CRASH_AT=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    if point != "publish":
        assert not out.exists()  # nothing half-written where a reader looks
    else:
        assert metrics(out) == reference["metrics"]  # the old run or the new one, whole
    resumed = run(config, out, home)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert metrics(out) == reference["metrics"]
    if point.startswith("train-step"):
        assert "resum" in resumed.stderr.lower()  # the trainer picked up its checkpoint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "run"]  # no staging or aside copy left


def test_a_rerun_into_the_same_directory_leaves_no_file_of_the_earlier_run(reference, tmp_path, tiny_model_dir):
    home, out = tmp_path / "home", tmp_path / "run"
    with_trajectory = write_config(tmp_path / "a.yaml", small_study(tiny_model_dir))
    without = write_config(tmp_path / "b.yaml", small_study(tiny_model_dir, trajectory=False))
    assert run(with_trajectory, out, home).returncode == 0
    assert (out / "trajectory.json").is_file()
    proc = run(without, out, home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (out / "trajectory.json").exists()
    assert "trajectory" not in (out / "report.md").read_text().lower().split("## ")[0]


def test_two_runs_on_one_home_compute_each_stage_once(reference, tmp_path):
    home = tmp_path / "home"
    a = launch(reference["config"], tmp_path / "a", home)
    time.sleep(1.0)
    b = launch(reference["config"], tmp_path / "b", home)
    (_, err_a), (_, err_b) = a.communicate(timeout=600), b.communicate(timeout=600)
    assert a.returncode == 0, err_a[-3000:]
    assert b.returncode == 0, err_b[-3000:]
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b") == reference["metrics"]
    stages: dict[str, list[tuple[str, bool]]] = {}
    for run_dir in (tmp_path / "a", tmp_path / "b"):
        for s in json.loads((run_dir / "run.json").read_text())["stages"]:
            stages.setdefault(s["stage"], []).append((run_dir.name, s["computed"]))
    # The home was empty: every stage was computed exactly once, by one of the two runs, and the
    # other run (which looked it up too) reused it.
    assert stages
    for name, uses in stages.items():
        assert sum(computed for _, computed in uses) == 1, (name, uses)
        assert {run for run, _ in uses} == {"a", "b"}, (name, uses)
    assert "waiting for pid" in err_a + err_b  # one of them waited for the other at some stage
    done = list(home.glob("stages/*/DONE"))
    assert len(done) == len({p.parent.name for p in done}) == len(list(home.glob("stages/*")))
    assert not list(home.glob("stages/*/.lock"))  # every lock released


HOLD = textwrap.dedent("""
    import os, signal, sys, time
    from first_eval.locks import ProcessLock
    lock = ProcessLock(sys.argv[1], what="a test")
    lock.acquire()
    if sys.argv[2] == "orphan":  # a child inherits the locked descriptor and outlives its parent
        child = os.fork()
        if child == 0:
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 1), os.dup2(null, 2)
            time.sleep(120)
            os._exit(0)
        open(sys.argv[1] + ".child", "w").write(str(child))
    print("held", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize("how", ["killed", "orphan"])
def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, how):
    from first_eval.locks import ProcessLock, lock_owner

    path = tmp_path / "stage.lock"
    holder = subprocess.run([sys.executable, "-c", HOLD, str(path), how], capture_output=True, text=True,
                            env=ENV, timeout=60)
    assert holder.returncode == -signal.SIGKILL and holder.stdout == "held\n"
    dead = lock_owner(path)["pid"]
    messages: list[str] = []
    t0 = time.monotonic()
    try:
        with ProcessLock(path, poll=0.1, on_wait=messages.append):
            assert lock_owner(path)["pid"] == os.getpid()
    finally:
        if how == "orphan":
            os.kill(int(Path(str(path) + ".child").read_text()), signal.SIGKILL)
    assert time.monotonic() - t0 < 10
    assert any(str(dead) in m for m in messages), messages
    if how == "orphan":
        assert any("broke a stale lock" in m for m in messages), messages
    assert not path.exists()


def test_a_held_lock_makes_the_second_process_wait(tmp_path):
    from first_eval.locks import ProcessLock

    path = tmp_path / "stage.lock"
    script = ("import sys, time\nfrom first_eval.locks import ProcessLock\n"
              "with ProcessLock(sys.argv[1], what='slow stage'):\n    print('in', flush=True)\n    time.sleep(2)\n")
    holder = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True, env=ENV)
    assert holder.stdout.readline() == "in\n"
    messages: list[str] = []
    t0 = time.monotonic()
    with ProcessLock(path, poll=0.05, on_wait=messages.append):
        waited = time.monotonic() - t0
    holder.wait(timeout=30)
    assert waited > 0.5 and holder.returncode == 0
    assert len(messages) == 1 and f"pid {holder.pid}" in messages[0] and "slow stage" in messages[0]
