"""What is wrong with a rule file, and where: every check reports `Problem`s, never prints.

A problem names the file, the 1-based line, the capability (rule) it belongs to when there is
one, and a message that says what is wrong and what to do. Errors stop a load; warnings do not.
"""
from __future__ import annotations

from dataclasses import dataclass

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int | None
    rule: str | None          # capability name, when the problem belongs to one
    message: str
    severity: str = ERROR

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        rule = f" [rule {self.rule}]" if self.rule else ""
        return f"{where}:{rule} {self.severity}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "rule": self.rule,
                "severity": self.severity, "message": self.message}


class RulesError(Exception):
    """A rule file (or set of files) that must not reach traffic: the old table keeps serving."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        errors = [p for p in self.problems if p.severity == ERROR]
        super().__init__("\n".join(str(p) for p in errors) or "invalid rules")


class RulesUnreadable(RulesError):
    """The rule file or directory cannot be read at all (missing, permissions, not UTF-8)."""
