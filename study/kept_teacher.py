"""BURN's FP teacher for the second edition, kept in git so a fresh machine need not retrain it.

    python -m study.kept_teacher digest [ENCODER]   # the weights digest (default: the machine's teacher)
    python -m study.kept_teacher keep --expect HEX  # commit-ready copy of the machine's teacher
    python -m study.kept_teacher restore            # put the kept teacher where the BURN parts read it

The BURN parts distil from one fixed teacher: the teacher pilot's run (seed 0), which the queue
(`study.v2`) retrains, about an hour on a 2-core CPU, on every machine that lacks it. The retrained
run is the same run (its loss and every kNN snapshot equal the pilot's record), but an hour per
fresh machine is a third of a session. So its run files (encoder, checkpoint, metrics) are kept
under reports/study/v2/teacher/ with their weights digest, and `restore` copies them to
`.study2/pilot/runs/teacher/s0`, where the queue finds a teacher and goes straight to the parts.

The digest is over the weights, not the file: sha256 over each state_dict key and its tensor's
bytes, in order. torch.save's bytes are not stable (saving the same weights twice gives two file
digests), so a file digest names a file; this one names the network. `restore` refuses a kept
encoder whose weights do not match the kept digest, and leaves the machine's teacher as it was.
`make study2-repeat` does not restore: a repeat retrains the teacher from nothing.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Sequence

from common import runs
from common.checkpoint import atomic_write
from common.config import ArgumentParser, cli_main
from common.errors import ConfigError
from study.v2 import TEACHER, V2

KEPT = V2 / "teacher"
DIGEST = "weights.sha256"  # the kept encoder's weights digest, one line of hex
FILES = (runs.ENCODER, runs.CHECKPOINT, runs.METRICS)  # what the queue places in a BURN workspace


def weights_digest(encoder: Path) -> str:
    """sha256 over the encoder's state_dict: each key (UTF-8) then its tensor's raw bytes, in order."""
    import torch

    state = runs.read_encoder(encoder)["state_dict"]
    h = hashlib.sha256()
    for key, tensor in state.items():
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _copy_all(src: Path, dst: Path) -> None:
    missing = [name for name in FILES if not (src / name).is_file()]
    if missing:
        raise ConfigError(f"{src}: no {', '.join(missing)}: not a whole teacher run")
    dst.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        atomic_write(dst / name, lambda tmp, name=name: shutil.copyfile(src / name, tmp))


def keep(expect: str, source: Path = TEACHER, kept: Path = KEPT) -> str:
    """Copy the machine's teacher run into `kept` with its weights digest, after checking the digest
    is `expect` (the one logged for the teacher the parts distilled from)."""
    if not (source / runs.ENCODER).is_file():
        raise ConfigError(f"{source}: no teacher on this machine to keep")
    digest = weights_digest(source / runs.ENCODER)
    if digest != expect.strip().lower():
        raise ConfigError(f"{source / runs.ENCODER}: weights digest {digest[:16]}..., expected {expect[:16]}...")
    _copy_all(source, kept)
    atomic_write(kept / DIGEST, lambda tmp: tmp.write_text(digest + "\n"))
    return digest


def restore(kept: Path = KEPT, target: Path = TEACHER) -> str:
    """Put the kept teacher at `target` (nothing done where a teacher with the kept weights is
    already there); a kept encoder that does not match its digest, or another teacher at `target`,
    is refused and `target` is left as it was."""
    if not (kept / DIGEST).is_file():
        raise ConfigError(f"{kept / DIGEST}: no kept teacher (keep one first)")
    expect = (kept / DIGEST).read_text().strip()
    if (target / runs.ENCODER).is_file():
        there = weights_digest(target / runs.ENCODER)
        if there != expect:
            raise ConfigError(f"{target}: holds another teacher (weights {there[:16]}..., kept {expect[:16]}...)")
        return expect
    found = weights_digest(kept / runs.ENCODER)
    if found != expect:
        raise ConfigError(f"{kept / runs.ENCODER}: weights digest {found[:16]}..., its {DIGEST} says {expect[:16]}...")
    # copied beside the target, then renamed: the queue takes a present encoder for a whole teacher
    staging = target.with_name(target.name + ".restoring")
    shutil.rmtree(staging, ignore_errors=True)
    _copy_all(kept, staging)
    shutil.rmtree(target, ignore_errors=True)  # an unfinished copy (no encoder): replaced
    staging.rename(target)
    return expect


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    dig = sub.add_parser("digest", help="print an encoder's weights digest")
    dig.add_argument("encoder", nargs="?", default=str(TEACHER / runs.ENCODER))
    k = sub.add_parser("keep", help="copy the machine's teacher into reports/study/v2/teacher/")
    k.add_argument("--expect", required=True, help="the weights digest it must have")
    sub.add_parser("restore", help="copy the kept teacher to where the BURN parts read it")
    args = parser.parse_args(argv)
    if args.command == "digest":
        print(weights_digest(Path(args.encoder)))
    elif args.command == "keep":
        print(f"kept {keep(args.expect)} in {KEPT.relative_to(V2.parents[2])}")
    else:
        print(f"teacher {restore()[:16]}... at {TEACHER.relative_to(V2.parents[2])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
