"""Shared fixtures for the whole suite.

- The hub is never contacted: ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` default to 1 here
  (otherwise every hub look-up retries for ~23 s), and tokenizers stay single-threaded.
- ``smollm2_tokenizer`` is the real SmolLM2 tokenizer from the converted cache in the user's
  ``$FIRST_HOME`` (default ``~/.cache/first``), shared across sessions: the one-time GGUF
  conversion (~20 s) is paid once per machine, not once per test run. Tests that need a cold
  cache use ``cold_first_home``.
- ``tiny_llama`` is a seeded random 2-layer Llama with the real tokenizer's vocabulary: fast
  tests of anything that takes a causal LM.
- Tests that load the real 135M-parameter model are marked ``@pytest.mark.slow``
  (``pytest -m "not slow"`` skips them).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tiny_models import TINY_LLAMA, make_tiny_llama  # noqa: E402,F401  (tests/ is on sys.path)


@pytest.fixture(scope="session")
def first_home() -> Path:
    """The FIRST cache directory the session uses (the user's, so conversions are reused)."""
    from first_eval.zoo import first_home as _first_home

    return _first_home()


@pytest.fixture
def cold_first_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``$FIRST_HOME`` for this test only."""
    home = tmp_path / "first-home"
    monkeypatch.setenv("FIRST_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The real SmolLM2-135M-Instruct tokenizer (49,152 tokens)."""
    from first_eval.zoo import load_tokenizer

    return load_tokenizer("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_llama(smollm2_tokenizer):
    """``(model, tokenizer)``: a random 2-layer Llama (hidden 64, 4 heads) with the real vocab.

    Session-scoped: do not train it in place; ``copy.deepcopy`` it first.
    """
    return make_tiny_llama(smollm2_tokenizer), smollm2_tokenizer


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_llama):
    """``tiny_llama`` saved as an HF directory (a valid model spec on disk). Read-only: shared."""
    model, tokenizer = tiny_llama
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
