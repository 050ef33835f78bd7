"""Small helpers shared by several modules: atomic outputs, progress bars."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds.

    An interrupted or failing writer therefore never leaves a half-written ``path``
    behind (the temporary file is removed on error).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def progress_enabled(progress: bool | None) -> bool:
    """``None`` means: show progress only when stderr is a terminal (never in tests/CI)."""
    if progress is None:
        return sys.stderr.isatty()
    return bool(progress)


def progress_bar(iterable, *, total=None, desc=None, progress: bool | None = None):
    """Wrap ``iterable`` in a tqdm bar on stderr when progress is enabled."""
    if not progress_enabled(progress):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, leave=False)
