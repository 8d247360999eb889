"""How a command that runs a step reports: its JSON summary alone on stdout, everything else
(library logs, trainer metrics, progress bars, errors) on stderr, secrets masked."""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from types import TracebackType
from typing import Any

import typer

from satk8s.errors import Satk8sError


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send whatever is written to stdout meanwhile to stderr, Python's `print` and writes to
    file descriptor 1 from native code alike."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no descriptor 1 (an embedding host): Python-level only
        saved = None
    if saved is not None:
        os.dup2(2, 1)
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def fail(err: BaseException) -> None:
    """Print the error (secrets masked) on stderr and exit with status 2."""
    from satk8s.store.redact import redact_text

    typer.secho(f"error: {redact_text(str(err))}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def print_summary(run: Callable[[], dict[str, Any]]) -> None:
    """Run a step; print its summary as JSON on stdout, or its error on stderr (exit 2)."""
    try:
        with stdout_to_stderr():
            summary = run()
    except Satk8sError as err:
        fail(err)
    typer.echo(json.dumps(summary, indent=2, default=str))


def install_redaction() -> None:
    """Mask secrets in every log record of satk8s and the HTTP/AWS libraries, and in the
    traceback of an unexpected error."""
    from satk8s.store.redact import install_log_redaction, redact_text

    install_log_redaction()

    def excepthook(kind: type[BaseException], err: BaseException, tb: TracebackType | None) -> None:
        text = "".join(traceback.format_exception(kind, err, tb))
        sys.stderr.write(redact_text(text))

    sys.excepthook = excepthook
