"""Output folders that are either complete or absent."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ["OutputExists", "atomic_output_dir", "file_sha256", "read_document"]


class OutputExists(FileExistsError):
    """The output folder is not empty and replacing it was not asked for."""


@contextmanager
def atomic_output_dir(out: str | Path, *, force: bool = False):
    """Yield a temporary sibling folder of ``out``; on success it replaces ``out``, on any
    exception it is removed and ``out`` is left exactly as it was.

    Refuses (``OutputExists``, before any work) a non-empty ``out`` unless ``force``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExists(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputExists(f"{out} is not empty; pass --force to replace it (nothing was written)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB blocks (checkpoints can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_document(path: Path, parse, error: type[Exception], syntax_errors: tuple[type[BaseException], ...],
                  what: str):
    """``parse(text)`` of a text file; ``error`` naming the file when it cannot be read or is not
    valid ``what`` (one of ``syntax_errors`` raised by ``parse``)."""
    try:
        return parse(Path(path).read_text())
    except OSError as e:
        raise error(f"{path}: cannot be read: {e.strerror}") from None
    except syntax_errors as e:
        raise error(f"{path}: not valid {what}: {e}") from None
