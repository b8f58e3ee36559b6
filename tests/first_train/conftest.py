"""Fixtures of the first_train tests: tiny models on disk, a tiny fine-tuned teacher and its store.

Everything is built once per session from the shared ``tiny_llama`` (a random 2-layer Llama with
the real SmolLM2 tokenizer) so the trainer, commands and pipeline tests stay fast.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

FAST_TRAIN = dict(progress=False, lr=1e-2, batch_size=8)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_llama) -> Path:
    """``tiny_llama`` saved as an HF directory (what a model spec on disk looks like)."""
    model, tokenizer = tiny_llama
    path = tmp_path_factory.mktemp("tiny-llama")
    copy.deepcopy(model).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny model fine-tuned on 32 countries/train items until its answers are confident."""
    from first_train.config import FinetuneConfig
    from first_train.finetune import run_finetune

    out = tmp_path_factory.mktemp("tiny-teacher") / "teacher"
    run_finetune(FinetuneConfig(model=str(tiny_model_dir), dataset="countries", split="train", limit=32,
                                out=str(out), max_steps=24, **FAST_TRAIN))
    return out


@pytest.fixture(scope="session")
def tiny_store_dir(tmp_path_factory: pytest.TempPathFactory, tiny_teacher_dir: Path) -> Path:
    """The tiny teacher's top-5 (plus 4 RS-KD samples) on its 32 train items, uncalibrated."""
    from first_train.config import ExtractConfig
    from first_train.extract import run_extract

    out = tmp_path_factory.mktemp("tiny-store") / "store"
    run_extract(ExtractConfig(teacher=str(tiny_teacher_dir), dataset="countries", split="train", limit=32,
                              k=5, rs_samples=4, out=str(out), progress=False))
    return out
