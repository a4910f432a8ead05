"""Atomic writes and safe loads of checkpoints and small result files.

Everything a stage writes goes to a temporary file in the same folder and is renamed into
place, so an interrupted run never leaves a half-written checkpoint or metrics file behind.
Checkpoints are loaded with ``weights_only=True``: only tensors and plain containers, never
pickled code.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from common.errors import ConfigError


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_checkpoint(obj: dict, path: str | Path) -> Path:
    """``torch.save`` atomically (temp file + rename)."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """``torch.load(weights_only=True)``; a missing or unreadable file is one clear ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path}: file not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated file, pickled code, not a torch file at all
        raise ConfigError(f"checkpoint {path}: {_unreadable_reason(err)}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"checkpoint {path}: expected a dict, found {type(obj).__name__}")
    return obj


def _unreadable_reason(err: Exception) -> str:
    """Why torch.load refused a file, in our words: torch's own message for pickled objects
    advises weights_only=False, which would run whatever code the file holds."""
    text = str(err)
    if "Weights only load failed" in text or "Unsupported global" in text or "weights_only" in text:
        return ("not a weights-only torch file (it holds pickled objects or is not a torch file at "
                "all; it is not loaded, since unpickling arbitrary objects can run code)")
    if "zip archive" in text or "central directory" in text or isinstance(err, (EOFError, OSError)):
        return "truncated or corrupt (not a complete torch file)"
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return f"cannot be read as a weights-only torch file ({first[:200]})"


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))
