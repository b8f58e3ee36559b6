"""A decoder's bottom and top layers: run only the top, from hidden states computed once.

Models fine-tuned with only their last ``N`` decoder layers trained (``first-train ...
--train-top-layers N``) keep the layers below them as they were: every such model made from one
base computes the same hidden states below the cut, for the same tokens. Two users of that:

- training (:mod:`first_train.frozen`) caches them per training item, so each step runs only the
  top layers;
- scoring (:class:`SharedBottom`, used by :class:`first_eval.scorer.Scorer`) keeps them per token
  batch, so the second and later models of a study that share a base and a cut — the seeds of a
  student, a teacher's checkpoints — run only their top layers over the items.

The top-layer path is the model's own forward with its layer list cut to the top layers and the
cached states passed as ``inputs_embeds`` (the causal mask, rotary embeddings, final norm and
head are the model's code). A model whose forward transforms ``inputs_embeds`` (one that scales
its embeddings), or whose bottom layers differ from the ones that filled the cache, fails the
check each model gets on its first batch (:data:`CHECK_RTOL`) and is scored with its full
forward instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from first_eval.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["CHECK_RTOL", "SharedBottom", "bottom_hidden", "decoder_layers", "top_layers_only"]

#: The first batch of the top-layer path against the full forward: largest |difference| of the
#: final hidden states relative to their largest |value|.
CHECK_RTOL = 1e-4


def _inner(model: Any) -> Any:
    """The model under a DDP wrapper (``.module``), else the model."""
    return getattr(model, "module", model)


def decoder_layers(model: Any) -> tuple[Any, Any]:
    """``(decoder, layers)``: the decoder module and its ``nn.ModuleList`` of layers."""
    inner = _inner(model)
    decoder = inner.get_decoder() if hasattr(inner, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise UserError(f"--train-top-layers: {type(inner).__name__} has no decoder layer list")
    return decoder, layers


@contextlib.contextmanager
def top_layers_only(model: Any, n_top: int) -> Iterator[None]:
    """Within the block, ``model``'s decoder holds only its last ``n_top`` layers."""
    import torch

    decoder, layers = decoder_layers(model)
    decoder.layers = torch.nn.ModuleList(list(layers)[len(layers) - n_top:])
    try:
        yield
    finally:
        decoder.layers = layers


class _Stop(Exception):
    """Raised by the pre-hook once the first top layer's input is captured."""


def bottom_hidden(model: Any, n_top: int, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                  **kwargs: Any) -> torch.Tensor:
    """The hidden states entering the first of the top ``n_top`` layers, ``(B, L, d)``.

    The forward of ``model`` (a causal LM, or its base model when ``logits_to_keep`` is not
    accepted) runs until that layer is called; its input is captured and the forward is
    abandoned, so the layers above are never run. ``kwargs`` (position ids) pass through.
    """
    _, layers = decoder_layers(model)
    first_top = layers[len(layers) - n_top]
    captured: list[torch.Tensor] = []

    def hook(module, args, kw):
        captured.append(args[0] if args else kw["hidden_states"])
        raise _Stop

    handle = first_top.register_forward_pre_hook(hook, with_kwargs=True)
    inner = _inner(model)
    extra = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(inner.forward).parameters else {}
    try:
        inner(input_ids=input_ids, attention_mask=attention_mask, **extra, **{**kwargs, "use_cache": False})
    except _Stop:
        pass
    finally:
        handle.remove()
    if not captured:  # pragma: no cover - a forward that skips its layers
        raise UserError("--train-top-layers: the model's forward never reached its top layers")
    return captured[0]


class SharedBottom:
    """Hidden states below a cut, per token batch, for the models of one base (see the module doc).

    Parameters
    ----------
    n_bottom : int
        The layers below the cut (``n_layers - N`` for models trained with their top ``N``).
    budget_mb : int, default=2048
        States kept at most; batches beyond it are run by each model in full.

    Attributes
    ----------
    hits, computed, full : int
        Batches read from the cache, computed (and stored while the budget lasts), and run in
        full (a model that failed its check, or one with no layer above the cut).
    """

    def __init__(self, n_bottom: int, *, budget_mb: int = 2048) -> None:
        if n_bottom < 1:
            raise ValueError(f"Expected n_bottom >= 1, got {n_bottom}")
        self.n_bottom = int(n_bottom)
        self.budget = int(budget_mb) << 20
        self._states: dict[str, torch.Tensor] = {}
        self._checked: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> checks passed
        self._bytes = 0
        self.hits = self.computed = self.full = 0

    @staticmethod
    def _key(input_ids: torch.Tensor, kwargs: dict[str, Any]) -> str:
        digest = hashlib.sha256(repr(tuple(input_ids.shape)).encode())
        digest.update(input_ids.detach().cpu().contiguous().numpy().tobytes())
        for name in sorted(kwargs):
            value = kwargs[name]
            if hasattr(value, "numpy"):
                digest.update(name.encode())
                digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def forward(self, model: Any, input_ids: torch.Tensor, kwargs: dict[str, Any]) -> tuple[torch.Tensor, bool]:
        """``model``'s final hidden states on the batch, and whether the shared path served it.

        Each model is checked against its full forward twice at most: on its first batch that
        it computes the states of itself (the ``inputs_embeds`` path), and on its first batch read
        from the cache (the bottom layers are the same as those of the model that filled it). A
        failed check sends every later batch of that model through its full forward.
        """
        _, layers = decoder_layers(model)
        n_top = len(layers) - self.n_bottom
        base = _inner(model).base_model
        checked = self._checked.setdefault(model, set())
        if n_top < 1 or "failed" in checked:
            self.full += 1
            return base(input_ids=input_ids, **kwargs).last_hidden_state, False
        key = self._key(input_ids, kwargs)
        hidden = self._states.get(key)
        if hidden is None:
            hidden = bottom_hidden(base, n_top, input_ids, **kwargs)
            size = hidden.numel() * hidden.element_size()
            if self._bytes + size <= self.budget:
                self._states[key] = hidden
                self._bytes += size
            self.computed += 1
            need = "own"
        else:
            self.hits += 1
            need = "read"
        with top_layers_only(model, n_top):
            fast = base(inputs_embeds=hidden, **kwargs).last_hidden_state
        if need not in checked:
            full = base(input_ids=input_ids, **kwargs).last_hidden_state
            scale = float(full.abs().max().clamp_min(1e-30))
            if float((fast - full).abs().max()) > CHECK_RTOL * scale:
                checked.add("failed")
                self.full += 1
                return full, False
            checked.update(("own", need))  # a read batch checks the own-states path too
        return fast, True

    def describe(self) -> dict[str, Any]:
        return {"n_bottom": self.n_bottom, "batches": len(self._states), "bytes": self._bytes,
                "hits": self.hits, "computed": self.computed, "full": self.full}
