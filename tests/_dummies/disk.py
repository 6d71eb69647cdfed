"""A full disk for one file: writes of that file's temporary copy fail with ENOSPC."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import pytest


def no_space_for(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make every atomic write of a file called ``name`` hit a full disk.

    :func:`uqbench.store.write_atomic` creates its temporary file with
    :func:`tempfile.mkstemp`; for ``name`` the real file is created (so a writer that
    forgets to remove it leaves it behind) but its descriptor writes to ``/dev/full``,
    where every write fails with ENOSPC, as on a full file system.
    """
    real = tempfile.mkstemp

    def mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, path = real(*args, **kwargs)
        if os.path.basename(path).startswith(f".{name}."):
            full = os.open("/dev/full", os.O_WRONLY)
            os.dup2(full, fd)
            os.close(full)
        return fd, path

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
