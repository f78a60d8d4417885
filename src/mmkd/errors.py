"""User-facing errors: each says what is wrong, where, and how to fix it.

They derive from ValueError (torchtitan convention) so library callers can catch them, and the
CLI renders them as one clear sentence with a non-zero exit code. `assert` is for invariants only.
"""


class MmkdError(ValueError):
    """A problem the user can fix: the message names the file/row/field and the fix."""


class ConfigError(MmkdError):
    """One or more config problems, reported together."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid config:\n" + "\n".join(f"  - {p}" for p in self.problems))
