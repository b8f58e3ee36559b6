"""Real 2-process CPU jobs under ``accelerate launch``: DDP fine-tuning and sharded extraction.

``--cpu --num_processes 2`` silently runs one process; ``ACCELERATE_USE_CPU=true`` with
``--multi_gpu`` gives two gloo ranks (DESIGN.md, "Environment facts").
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

SCRIPT = Path(sys.executable).with_name("first-train")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], *, processes: int = 2) -> subprocess.CompletedProcess:
    if not SCRIPT.exists():
        pytest.skip("the first-train console script is not installed in this environment")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), str(SCRIPT), *args]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_rank_ddp_finetune_keeps_replicas_identical_and_loss_falls(tmp_path, tiny_model_dir):
    out = tmp_path / "ddp"
    done = launch(["finetune", "--model", str(tiny_model_dir), "--dataset", "countries", "--limit", "32",
                   "--out", str(out), "--max-steps", "12", "--batch-size", "4", "--lr", "1e-2", "--save-every", "6",
                   "--no-progress"])
    record = json.loads((out / "first_train.json").read_text())
    assert record["num_processes"] == 2
    fingerprints = record["replica_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]  # both ranks end identical
    losses = record["losses"]
    assert sum(losses[-3:]) / 3 < losses[0] - 1.0
    assert done.stdout.count("12 steps") == 1  # the summary line is printed by rank 0 only
    assert (out / "checkpoints" / "step-000006" / "model.safetensors").is_file()


def test_two_process_extraction_writes_one_shard_each(tmp_path, tiny_model_dir):
    from first_train.config import ExtractConfig
    from first_train.extract import run_extract
    from first_train.store import TopKStore

    args = ["--teacher", str(tiny_model_dir), "--dataset", "countries", "--split", "train", "--limit", "12",
            "--k", "5", "--no-progress"]
    launch(["extract", *args, "--out", str(tmp_path / "sharded")])
    run_extract(ExtractConfig(teacher=str(tiny_model_dir), dataset="countries", split="train", limit=12, k=5,
                              out=str(tmp_path / "single"), progress=False))
    sharded, single = TopKStore(tmp_path / "sharded"), TopKStore(tmp_path / "single")
    files = [s["file"] for s in sharded.manifest["shards"]]
    assert len(files) == 2 and files[0].startswith("topk-00000-of-00002") and files[1].startswith("topk-00001-of-00002")
    assert sorted(map(str, sharded.seq_ids())) == sorted(map(str, single.seq_ids())) and len(sharded) == 12
    for seq_id in single.seq_ids():
        ids_a, probs_a = sharded.get(seq_id)
        ids_b, probs_b = single.get(seq_id)
        assert torch.equal(ids_a, ids_b) and torch.allclose(probs_a, probs_b, atol=1e-3)
