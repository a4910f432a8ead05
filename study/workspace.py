"""The study's workspaces: git worktrees of this repository in which DVC runs a part's stages.

A part runs in its half's worktree so that every seed of a half runs the same code and profile
(the commit is recorded in its part file); every command a stage starts runs in a process group
of its own, ended with the part when it fails or the driver is interrupted.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from common.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def worktree(path: Path, update: bool = False, commit: str = "HEAD") -> Path:
    """A worktree at `path`: made at `commit` the first time, reused (same code) after; `update`
    moves it to HEAD, keeping its runs (DVC then re-runs only what the change touches)."""
    if not (path / "dvc.yaml").is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        git("worktree", "prune")
        git("worktree", "add", "--detach", str(path), commit)
    elif update:
        git("checkout", "--detach", "--quiet", git("rev-parse", "HEAD"), cwd=path)
    return path


def dvc(ws: Path, *args: str, capture: bool = False) -> str:
    """DVC in the workspace, with this interpreter's environment first on PATH (the stages run
    `python -m ...`)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    code, out, err = run_in_group([str(Path(sys.executable).parent / "dvc"), *args], ws, env, capture)
    if code != 0:
        raise ConfigError(f"dvc {' '.join(args)} in {ws}: exit {code}"
                          + (f": {err.strip().splitlines()[-1]}" if capture and err and err.strip() else ""))
    return out if capture else ""


def run_in_group(cmd: list[str], cwd: Path, env: dict, capture: bool = False) -> tuple[int, str, str]:
    """Run `cmd` in a process group of its own and end the whole group unless it finished
    cleanly (failed, killed, or this driver interrupted): no training process a DVC stage
    started may outlive it and write beside a re-run of the same stage."""
    pipe = subprocess.PIPE if capture else None
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, text=True, stdout=pipe, stderr=pipe, start_new_session=True)
    try:
        out, err = proc.communicate()
    finally:
        if proc.returncode != 0:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    return proc.returncode, out or "", err or ""


def interrupt_on_sigterm() -> None:
    """A SIGTERM unwinds like Ctrl-C, so run_in_group ends its process group."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)
