"""The errors commands report. The command line maps each kind to its exit status
(`stacks.cli.EXIT_STATUS`, `stacks.cli.status_codes`); every one is printed as a single line.

- `UserError` and its kinds: the input is wrong and the user can fix it
  (an environment file, a flag, a model directory, missing credentials).
- `ToolError`: a program or service we depend on is missing or failed (checkov, git, AWS).
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Input the user can fix: one line, exit status 2."""


class ConfigError(UserError):
    """A value in a file or on the command line: `<file>: <field>: <what is wrong and what is allowed>`."""

    def __init__(self, path: Path | str, field: str, message: str, more: int = 0):
        self.path, self.field, self.message, self.more = str(path), field, message, more
        where = f"{self.path}: {field}" if field else self.path
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        super().__init__(f"{where}: {message}{suffix}")


class ArtifactError(UserError):
    """A model or adapter directory, or a published artifact, that cannot be used; or S3 refusing us."""


class ToolError(Exception):
    """A program or service we depend on is missing or failed (checkov, git, AWS): one line, exit status 3."""
