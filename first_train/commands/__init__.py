"""``first-train`` sub-commands, one module each; every module defines ``register(app)``.

The options of a command are generated from its config dataclass (:mod:`first_train.config`), so
the command line, the pipeline YAML and the Python API share one list of fields, help texts and
range checks (STYLE.md 8). Modules import torch only inside their command functions.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any

import typer

from first_eval.errors import UserError

__all__ = ["command_from_config", "echo"]


def echo(message: str) -> None:
    """Print a result line once: on the main process only under ``accelerate launch``."""
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(message)


def _option_type(annotation: Any) -> Any:
    """``int | None`` → ``Optional[int]`` (what Typer understands)."""
    args = typing.get_args(annotation)
    if type(None) in args and len(args) == 2:
        inner = next(a for a in args if a is not type(None))
        return typing.Optional[inner]  # noqa: UP007 - Typer needs typing.Optional
    return annotation


def command_from_config(cls: type, run: Callable[[Any], None], *, doc: str | None = None,
                        hidden: tuple[str, ...] = ()) -> Callable[..., None]:
    """A Typer command whose options are the fields of dataclass ``cls``.

    Each field ``max_steps`` becomes ``--max-steps`` with the field's ``metadata["help"]``; a bool
    field becomes a ``--flag/--no-flag`` pair. The command builds ``cls(**options)`` (its
    ``__post_init__`` checks ranges and raises :class:`UserError`) and calls ``run(config)``.
    """
    hints = typing.get_type_hints(cls)
    params = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name in hidden:
            continue
        flag = "--" + f.name.replace("_", "-")
        typ = _option_type(hints[f.name])
        decls = [f"{flag}/--no-{f.name.replace('_', '-')}"] if typ is bool else [flag]
        has_default = f.default is not dataclasses.MISSING
        option = typer.Option(*decls, help=f.metadata.get("help", ""), show_default=has_default and f.default is not None)
        default = f.default if has_default else inspect.Parameter.empty
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=Annotated[typ, option]))

    def command(**options: Any) -> None:
        try:
            config = cls(**options)
        except UserError:
            raise
        except (TypeError, ValueError) as exc:
            raise UserError(str(exc)) from None
        run(config)

    own = set(cls.__dict__.get("__annotations__", {}))
    # Required options first, then the command's own, then the shared (training loop, data) ones.
    params.sort(key=lambda p: (p.default is not inspect.Parameter.empty, p.name not in own))
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = doc or run.__doc__
    command.__name__ = getattr(run, "__name__", "command")
    return command
