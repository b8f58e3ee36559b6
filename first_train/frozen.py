"""Cached activations of a model's frozen bottom layers (``--train-top-layers N``).

When only the last ``N`` decoder layers (and the final norm) are trained, everything below them
is a fixed function of the tokens: the hidden states entering layer ``L − N`` are the same every
epoch. :class:`FrozenCache` computes them once per item and every training step then runs only
the top ``N`` layers forward and backward, from the cached states (``inputs_embeds`` into the
model's own forward with its layer list cut to the top ``N``, so the causal mask, the rotary
embeddings, the final norm and the head are the model's own code).

Exactness. The cached states are those a full forward computes, up to float round-off from a
different batch composition; the first training batch is checked against the full forward
(:meth:`FrozenCache.check`) and the cache is dropped, with a message, if they differ (a model
whose forward transforms ``inputs_embeds``, such as one that scales embeddings, would fail it).
Frozen layers with dropout are not cached: their output is random in training mode.

Storage. In memory when the states fit ``--frozen-cache-mb``; otherwise (or with
``--frozen-cache disk``) in one file under ``$FIRST_HOME/activations/<key>/``, whose key is the
content digest of the frozen weights, the model's config, the items' token ids, the cut, the
dtype and the versions of this package, torch and transformers: a later run with the same
student and items (another learning rate, another loss) reads it instead of computing it again. The file is written under a temporary name and
renamed, so a half-written cache is never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from first_eval.layers import _inner, bottom_hidden, decoder_layers, top_layers_only
from first_train.data import example_tokens

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["CHECK_RTOL", "FrozenCache", "bottom_hidden", "build_frozen_cache", "decoder_layers", "top_layers_only"]

FORMAT_VERSION = 1
CHECK_RTOL = 1e-4  # the first batch's logits, cached path against the full forward, relative to max |logit|
# decoder_layers, top_layers_only and bottom_hidden live in first_eval.layers (the scorer uses them too).


def _frozen_modules(model: Any, n_top: int) -> list[Any]:
    """The modules below the top ``n_top`` layers: the decoder's other children, then its bottom layers."""
    decoder, layers = decoder_layers(model)
    return [m for name, m in decoder.named_children() if name != "layers"] + list(layers)[: len(layers) - n_top]


def _has_dropout(modules: Sequence[Any], config: Any) -> bool:
    import torch

    for name in ("attention_dropout", "hidden_dropout", "dropout", "embd_pdrop", "resid_pdrop", "attn_pdrop"):
        if float(getattr(config, name, 0.0) or 0.0) > 0:
            return True
    return any(isinstance(m, torch.nn.Dropout) and m.p > 0 for mod in modules for m in mod.modules())


class FrozenCache:
    """The frozen bottom's output for every training item, one row per token.

    Parameters
    ----------
    flat : Tensor of shape (total_tokens, d)
        Every item's states, concatenated (in memory or mapped from a file).
    offsets : list of int
        Item ``i`` holds rows ``offsets[i]:offsets[i + 1]``.
    n_top : int
        Trained top layers (the states enter the first of them).
    mode : {"memory", "disk"}
    """

    def __init__(self, flat: torch.Tensor, offsets: Sequence[int], n_top: int, mode: str, *,
                 seconds: float = 0.0, reused: bool = False, path: Path | None = None) -> None:
        self.flat, self.offsets, self.n_top, self.mode = flat, list(offsets), int(n_top), mode
        self.seconds, self.reused, self.path = seconds, reused, path

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def batch(self, indices: Sequence[int], width: int) -> torch.Tensor:
        """Right-padded ``(len(indices), width, d)`` states of the items (zeros past each item)."""
        import torch

        out = torch.zeros((len(indices), width, self.flat.shape[1]), dtype=self.flat.dtype)
        for row, i in enumerate(indices):
            a, b = self.offsets[i], self.offsets[i + 1]
            out[row, : b - a] = self.flat[a:b]
        return out

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "items": len(self), "tokens": int(self.offsets[-1]),
                "bytes": int(self.flat.numel() * self.flat.element_size()), "n_top": self.n_top,
                "seconds": round(self.seconds, 3), "reused": self.reused,
                "path": str(self.path) if self.path else None}

    def check(self, model: Any, batch: dict[str, Any]) -> float:
        """Largest |Δ logit| between the cached path and the full forward on ``batch``, relative
        to the largest |logit| (``batch`` must carry ``frozen_hidden``)."""
        import torch

        from first_train.data import kept_logits

        with torch.no_grad():
            cached = kept_logits(model, batch)
            full = kept_logits(model, batch, frozen=False)
        scale = float(full.abs().max().clamp_min(1e-30))
        return float((cached - full).abs().max()) / scale


def _cache_key(model: Any, n_top: int, token_ids: Sequence[Sequence[int]], dtype: Any) -> str:
    import torch
    import transformers

    from first_eval import __version__

    _, layers = decoder_layers(model)
    digest = hashlib.sha256()
    head = {"format": FORMAT_VERSION, "package": __version__, "torch": torch.__version__,
            "transformers": transformers.__version__,
            "n_layers": len(layers), "n_top": n_top, "dtype": str(dtype),
            "config": _inner(model).config.to_json_string(use_diff=False)}
    digest.update(json.dumps(head, sort_keys=True).encode())
    for module in _frozen_modules(model, n_top):
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    for ids in token_ids:
        digest.update(json.dumps(list(ids)).encode())
    return digest.hexdigest()[:20]


def build_frozen_cache(model: Any, n_top: int, examples: Sequence[Any], *, mode: str = "auto", budget_mb: int = 2048, batch_size: int = 16,
                       device: Any = None, progress: bool = True, world_size: int = 1,
                       description: str = "train") -> FrozenCache | None:
    """Compute (or read) the frozen bottom's states for ``examples``; None when caching does not apply.

    Not applied (None, with one line saying why where it matters): ``mode="off"``; nothing is
    frozen below the top layers; dropout in the frozen layers; several processes with a cache that
    does not fit in memory.
    """
    import torch
    from tqdm.auto import tqdm

    if mode == "off":
        return None
    _, layers = decoder_layers(model)
    if n_top >= len(layers):
        return None
    inner = _inner(model)
    if _has_dropout(_frozen_modules(model, n_top), inner.config):
        print(f"{description}: the frozen layers use dropout; recomputing them every step", file=sys.stderr)
        return None

    token_ids = [list(example_tokens(e)) for e in examples]
    lengths = [len(t) for t in token_ids]
    offsets = [0]
    for n in lengths:
        offsets.append(offsets[-1] + n)
    hidden = int(inner.config.hidden_size)
    dtype = next(inner.parameters()).dtype
    nbytes = offsets[-1] * hidden * torch.empty((), dtype=dtype).element_size()
    if mode == "auto":
        mode = "memory" if nbytes <= budget_mb * 2**20 else "disk"
    if mode == "disk" and world_size > 1:
        print(f"{description}: the frozen-layer cache ({nbytes / 2**20:.0f} MiB) needs the disk, which several "
              "processes do not share here; recomputing the frozen layers every step", file=sys.stderr)
        return None

    path = None
    if mode == "disk":
        from first_eval.zoo import first_home

        path = first_home() / "activations" / _cache_key(model, n_top, token_ids, dtype)
        data = path / "states.bin"
        if (path / "meta.json").is_file():
            meta = json.loads((path / "meta.json").read_text())
            if meta.get("offsets") == offsets and meta.get("hidden") == hidden:
                flat = torch.from_file(str(data), shared=False, size=offsets[-1] * hidden, dtype=dtype)
                return FrozenCache(flat.view(offsets[-1], hidden), offsets, n_top, "disk", reused=True, path=path)

    started = time.perf_counter()
    flat = torch.empty((offsets[-1], hidden), dtype=dtype)
    order = sorted(range(len(examples)), key=lambda i: (-lengths[i], i))
    bar = tqdm(total=len(examples), desc=f"{description}: caching frozen layers", unit="item",
               dynamic_ncols=True, disable=not progress)
    was_training = inner.training
    inner.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                width = lengths[chunk[0]]
                ids = torch.zeros((len(chunk), width), dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for r, i in enumerate(chunk):
                    ids[r, : lengths[i]] = torch.tensor(token_ids[i])
                    mask[r, : lengths[i]] = 1
                states = bottom_hidden(model, n_top, ids.to(device or "cpu"), mask.to(device or "cpu")).cpu()
                for r, i in enumerate(chunk):
                    flat[offsets[i]:offsets[i + 1]] = states[r, : lengths[i]]
                bar.update(len(chunk))
    finally:
        inner.train(was_training)
        bar.close()
    seconds = time.perf_counter() - started
    if mode == "disk":
        _write_disk(path, flat, offsets, hidden)
    return FrozenCache(flat, offsets, n_top, mode, seconds=seconds, path=path)


def _write_disk(path: Path, flat: torch.Tensor, offsets: list[int], hidden: int) -> None:
    """Write the states under a temporary name, fsync, rename: a cache that exists is whole."""
    import shutil

    from first_eval.fileio import fsync_dir, fsync_tree

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    import torch

    flat.contiguous().view(-1).view(torch.uint8).numpy().tofile(tmp / "states.bin")
    (tmp / "meta.json").write_text(json.dumps({"format": FORMAT_VERSION, "offsets": offsets, "hidden": hidden}))
    fsync_tree(tmp)
    try:
        os.replace(tmp, path)
    except OSError:  # another process wrote the same key first: its file is the same
        shutil.rmtree(tmp, ignore_errors=True)
    fsync_dir(path.parent)
