"""The `recolor` command line: declares options and hands each command to one library function.

No training or image logic lives here. torch is imported inside the commands (through the library
modules) so that `recolor --help` and `recolor --version` answer at once.
"""

from __future__ import annotations

import functools
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, Optional, TypeVar

import typer
from rich.console import Console

from recolor import __version__
from recolor.errors import RecolorError

app = typer.Typer(
    name="recolor",
    help="Bring color to black-and-white photographs with U-Net GANs working in CIE Lab.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List, download and verify the built-in models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

console = Console()
error_console = Console(stderr=True)

F = TypeVar("F", bound=Callable)


def friendly_errors(command: F) -> F:
    """Print a RecolorError as one line (cause, then fix) and exit with its code; bugs keep their traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except RecolorError as error:
            message = f"[bold red]error:[/] {error.cause}"
            if error.fix:
                message += f" [dim]→[/] {error.fix}"
            error_console.print(message, highlight=False, soft_wrap=True)
            raise typer.Exit(error.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"recolor-cli {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Bring color to black-and-white photographs with U-Net GANs working in CIE Lab."""


# Options shared by several commands, declared once.
Device = Annotated[str, typer.Option(help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")]
Workers = Annotated[int, typer.Option(min=0, help="Worker processes for decoding images (0: in the main process).")]
BatchSize = Annotated[int, typer.Option(min=1, help="Images per batch.")]


def main() -> None:
    """Console-script entry point."""
    app(prog_name="recolor")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
