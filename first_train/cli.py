"""``first-train`` — fine-tune, extract a teacher's top-k, calibrate it, distill students."""

from __future__ import annotations

import typer

from first_eval.errors import run_cli

app = typer.Typer(
    name="first-train",
    help="FIRST: fine-tune, extract a teacher's top-k store, calibrate it, distill students.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """FIRST: fine-tune, extract a teacher's top-k store, calibrate it, distill students."""


_COMMANDS: tuple[str, ...] = ("finetune", "extract", "calibrate", "distill", "pipeline")


def _register() -> None:
    import importlib

    for name in _COMMANDS:
        importlib.import_module(f"first_train.commands.{name}").register(app)


def main(argv: list[str] | None = None) -> None:
    _register()
    run_cli(app, argv)
