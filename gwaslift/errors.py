"""The one exception type that gwaslift raises for bad input."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: a missing or malformed file, inconsistent IDs, an unusable phenotype.

    The message names the file (and the line or sample where possible) and what was
    expected, so that the user can fix the input without reading our code.
    """

    def __init__(self, message: str, path: object | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(where + message)
        self.path = path
        self.line = line
