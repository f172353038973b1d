"""Known errors: each becomes one clear line and an exit code (see cli.py)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    PARTIAL = 1  # some repositories (or reports) failed; the others were synced
    USAGE = 2  # bad configuration, templates or command-line usage
    FLEET = 3  # the fleet repository could not be read or updated: nothing changed
    UNEXPECTED = 70  # a bug or an error prgen does not know (EX_SOFTWARE, as sysexits.h)
    BROKEN_PIPE = 141  # stdout was closed by its reader (128 + SIGPIPE, as shells report it)


class PrgenError(Exception):
    exit_code: ExitCode = ExitCode.PARTIAL


class ConfigError(PrgenError):
    """A configuration or template problem, located by a path into the document.

    One error may carry several problems (every schema violation at once), each
    as (path, reason), so a user fixes them all in one round.
    """

    exit_code = ExitCode.USAGE

    def __init__(self, reason: str, path: str = "", source: str = "") -> None:
        self.source = source
        self.problems: list[tuple[str, str]] = [(path, reason)]
        super().__init__(reason)

    @classmethod
    def many(cls, problems: list[tuple[str, str]], source: str = "") -> ConfigError:
        error = cls(problems[0][1], problems[0][0], source)
        error.problems = list(problems)
        return error

    @property
    def path(self) -> str:
        return self.problems[0][0]

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return "\n".join(
            f"{where}{path}: {reason}" if path else f"{where}{reason}"
            for path, reason in self.problems
        )


class FleetError(PrgenError):
    """The fleet repository could not be cloned, fetched, or pushed to, or the work
    directory could not be used (not prgen's, read-only, full)."""

    exit_code = ExitCode.FLEET
