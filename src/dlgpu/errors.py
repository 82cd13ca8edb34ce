"""The exception tree. ``BadInput`` is what the CLI turns into one line and exit code 2."""

from __future__ import annotations


class DlgpuError(Exception):
    """Base of every error dlgpu raises on purpose."""


class BadInput(DlgpuError):
    """The user asked for something that does not exist or is not valid.

    The message names what was wrong and what is valid, in one line, in the library's terms: ``param`` is the
    parameter it is about (``batch_size``, ``deadline_s``), and ``str()`` starts with it. The command line puts
    its own flag for that parameter in its place (``cli.common``)."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def __str__(self) -> str:
        return f"{self.param} {self.message}" if self.param else self.message
