"""``first-eval`` — the analysis command line.

One module per sub-command; each defines ``register(app)``. Modules import torch and
transformers only inside their command functions, so ``first-eval metrics`` stays NumPy-only.
"""

from __future__ import annotations

import typer

from first_eval.errors import run_cli

app = typer.Typer(
    name="first-eval",
    help="Measure how trustworthy (accurate and calibrated) language models are.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Sub-command modules, in the order `--help` lists them.

@app.callback()
def _root() -> None:
    """Measure how trustworthy (accurate and calibrated) language models are."""


_COMMANDS = ("run", "score", "metrics", "report", "import", "knowledge")
_MODULES = {"import": "imports"}  # `import` is a keyword


def _register() -> None:
    import importlib

    for name in _COMMANDS:
        importlib.import_module(f"first_eval.cli.{_MODULES.get(name, name)}").register(app)


def main(argv: list[str] | None = None) -> None:
    _register()
    run_cli(app, argv)
