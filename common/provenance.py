"""Provenance recorded beside every result: git commit, params hash, hardware, versions."""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch


def git_commit(cwd: str | Path | None = None) -> str:
    """The HEAD commit (with '+dirty' when tracked files changed), or 'unknown' outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def params_hash(params: Any) -> str:
    """A short stable hash of a (JSON-able) parameter dict: same settings, same hash."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux; platform's guess elsewhere): a study part
    records the CPU that trained it, since float trajectories differ between CPU families."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def provenance(params: Any, device: torch.device, **extra: Any) -> dict:
    """The provenance block every metrics JSON carries."""
    return {
        "git_commit": git_commit(Path(__file__).resolve().parent),
        "params_hash": params_hash(params),
        "device": device_description(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        **extra,
    }
