"""The claims study, first edition: the pre-registered runs on real images, in resumable parts, and the verdicts.

    python -m study.v1 run cq --seed 1     # one part: one half of the study, one seed (repeat --seed: several)
    python -m study.v1 status              # which parts are finished, which are missing
    python -m study.v1 verdicts            # the finished parts -> reports/study/claims.md, ...
    python -m study.v1 all                 # every missing part of both halves, then the verdicts
    python -m study.v1 register            # record the study profiles as they now stand

Halves: ``cq`` (profiles/study_cq.yaml) and ``burn`` (profiles/study_burn.yaml); each profile's
``seeds`` are the study's seeds of that half, one part per seed.

A part runs in its half's DVC workspace, a git worktree of this repository at ``.study/<half>``
made when the half's first part starts, so that every seed of a half runs the same code and
profile (the commit is recorded). Its params.yaml is the half's profile, as committed there, with
``seeds: [S]`` and the data root made absolute. The part runs the half's pretraining stages and then the evaluation suites, each
with ``dvc repro --single-item`` (the other half's stages never run): a killed part, started
again, goes on from the stage it was in (DVC skips the finished ones). It then measures every
arm of reports/claims.yaml the workspace holds for seed S (``reports.claims.harvest``) and writes
``reports/study/parts/<half>-s<S>.json``: the numbers, the commit, the minutes. Commit that file:
the verdicts read only finished parts, and a later sitting runs the missing ones.

A pilot (`run burn --seed 0 --pilot`) runs a seed outside the study's in the same worktree to try
a schedule before the study runs it: its numbers and sanity margins go to reports/study/pilots/
and never into a verdict (a shared teacher it trains is reused by the study's parts). After a
profile change, `--update` moves the worktree to the new commit; its finished runs stay and DVC
re-runs only the stages the change touches.

The study's profiles are pre-registered: reports/study/registered.json holds a digest of each
half's profile (its base laid under it), and a test fails when a profile, or the base it extends,
no longer matches. A deliberate change is registered again (`register`) and logged in
reports/study/RUN.md.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Sequence

from common import runs
from common.checkpoint import atomic_write, write_json
from common.config import ArgumentParser, cli_main, dump_params, read_params_file
from common.errors import ConfigError
from reports import claims as claims_module
from study.workspace import dvc, git, interrupt_on_sigterm, worktree

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "reports" / "study"
PARTS = STUDY / "parts"
PILOTS = STUDY / "pilots"  # runs that chose a schedule before the study; never in the verdicts
REGISTERED = STUDY / "registered.json"  # {half: digest of its profile} (pre-registration)
WORKSPACES = REPO / ".study"
HALVES = {"cq": "profiles/study_cq.yaml", "burn": "profiles/study_burn.yaml"}
# the pretraining stages of each half, by DVC stage-name prefix, in dvc.yaml order
STAGE_PREFIXES = {"cq": ("cq_",),
                  "burn": ("burn_teacher", "burn_random_init", "burn_stage1", "burn_stage2", "burn_distill",
                           "burn_baseline")}


def part_path(half: str, seed: int, pilot: bool = False) -> Path:
    return (PILOTS if pilot else PARTS) / f"{half}-s{seed}.json"


def half_profile(half: str) -> dict:
    if half not in HALVES:
        raise ConfigError(f"half {half!r}: expected one of {', '.join(HALVES)}")
    return read_params_file(REPO / HALVES[half], HALVES[half])


def profile_digest(profile: dict) -> str:
    """sha256 of the profile's values (key order and comments aside)."""
    return hashlib.sha256(json.dumps(profile, sort_keys=True).encode()).hexdigest()


def register() -> dict:
    digests = {half: {"profile": HALVES[half], "sha256": profile_digest(half_profile(half))} for half in HALVES}
    write_json(digests, REGISTERED)
    return digests


def part_params(profile: dict, seed: int, pilot: bool = False) -> dict:
    """The profile as one part runs it: its one seed, the data root absolute (the workspace is
    not where the profile's relative root points from). A pilot takes a seed the study does not."""
    seeds = runs.profile_seeds(profile)
    if (seed in seeds) == pilot:
        raise ConfigError(f"--seed {seed}: " + (f"a seed of the study ({seeds}); a pilot takes another" if pilot
                                                else f"not a seed of this half (seeds: {seeds}; --pilot for another)"))
    data = dict(profile.get("data") or {})
    data["root"] = str((REPO / data.get("root", "data")).resolve())
    return {**profile, "seeds": [seed], "data": data}


def workspace(half: str, update: bool = False) -> Path:
    """The half's worktree: made at HEAD by the first part, reused (same code) by the others."""
    return worktree(WORKSPACES / half, update)


def part_stages(half: str, ws: Path, params: dict) -> list[str]:
    """check_profile, the half's pretraining stages (DVC's names, one seed), its evaluation suites."""
    names = dvc(ws, "stage", "list", "--name-only", capture=True).split()
    pretraining = [n for n in names if n.startswith(STAGE_PREFIXES[half])]
    suites = [f"eval@{suite}" for suite in (params.get("eval") or {}).get("suites") or {}]
    return ["check_profile", *pretraining, *suites]


def run_part(half: str, seed: int, pilot: bool = False, update: bool = False) -> Path:
    half_profile(half)  # a known half
    ws = workspace(half, update)
    params = part_params(read_params_file(ws / HALVES[half], HALVES[half]), seed, pilot)  # the workspace's own
    commit = git("rev-parse", "HEAD", cwd=ws)
    text = dump_params(params)
    if not (ws / "params.yaml").is_file() or (ws / "params.yaml").read_text() != text:
        atomic_write(ws / "params.yaml", lambda tmp: tmp.write_text(text))
    for folder in ("runs/cq", "runs/burn"):  # the evaluation stages depend on both
        (ws / folder).mkdir(parents=True, exist_ok=True)
    start = time.time()
    for stage in part_stages(half, ws, params):
        print(f"[study {half} s{seed}] dvc repro -s {stage}", flush=True)
        dvc(ws, "repro", "--single-item", stage)
    values = claims_module.harvest(claims_module.load_claims(), params, ws / "runs")
    teacher = {claims_module.measurement_key(claims_module.TEACHER, {"suite": suite, "key": "top1"})
               for suite in claims_module.SANITY_SUITES}  # the shared teacher: its own seed
    measured = {key: {str(s): v for s, v in by_seed.items() if s == seed or key in teacher}
                for key, by_seed in values.items()}
    record = {"half": half, "seed": seed, "commit": commit, "profile": HALVES[half], "pilot": pilot,
              "minutes_this_sitting": round((time.time() - start) / 60, 1),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "values": {k: v for k, v in measured.items() if v}}
    if pilot:
        record["sanity"] = claims_module.sanity(claims_module.load_claims(), values)
        print(f"[study {half} s{seed}] pilot sanity margins (points over untrained): {record['sanity']}")
    path = part_path(half, seed, pilot)
    write_json(record, path)
    print(f"[study {half} s{seed}] finished -> {path.relative_to(REPO)}")
    return path


def claims_in_scope(params: dict) -> list[str]:
    """The ids of the claims whose two arms a half's profile trains (at its own precision set)."""
    trained = set(runs.pretraining_keys(params))

    def runs_it(arm: dict) -> bool:
        key, _, precision = claims_module.run_key(arm, params).partition("@")
        return key in trained and precision in ("", str(params.get("precision")))

    return [c.id for c in claims_module.load_claims() if runs_it(c.a) and runs_it(c.b)]


def finished_parts() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(PARTS.glob("*.json"))]


def merged_values(parts: Sequence[dict]) -> dict[str, dict[str, object]]:
    """measurement key -> {seed: value} over every finished part."""
    values: dict[str, dict[str, object]] = {}
    for part in parts:
        for key, by_seed in part["values"].items():
            values.setdefault(key, {}).update(by_seed)
    return values


def missing_parts() -> list[tuple[str, int]]:
    """(half, seed) of every study part without a finished part file, in the order `all` runs them."""
    return [(half, seed) for half in HALVES for seed in runs.profile_seeds(half_profile(half))
            if not part_path(half, seed).is_file()]


def render_verdicts(out: Path) -> int:
    values_file = out / "values.json"
    write_json(merged_values(finished_parts()), values_file)
    return claims_module.main(["--values", str(values_file), "--out", str(out)])


def status_lines() -> list[str]:
    lines = []
    for half in HALVES:
        lines.append(f"{half} half tests: {', '.join(claims_in_scope(half_profile(half)))}")
        for seed in runs.profile_seeds(half_profile(half)):
            path = part_path(half, seed)
            if path.is_file():
                part = json.loads(path.read_text())
                lines.append(f"{half} s{seed}: finished {part['finished']} at {part['commit'][:9]}")
            else:
                lines.append(f"{half} s{seed}: missing (python -m study.v1 run {half} --seed {seed})")
    return lines


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m study.v1", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run parts of one half, one seed each, in order; resumes a killed one")
    run.add_argument("half", choices=sorted(HALVES))
    run.add_argument("--seed", type=int, action="append", required=True, help="repeat for several parts")
    run.add_argument("--pilot", action="store_true",
                     help="a seed outside the study's, to try its schedule (reports/study/pilots/, never a verdict)")
    run.add_argument("--update", action="store_true",
                     help="move the half's worktree to HEAD first (its finished runs stay; DVC re-runs what changed)")
    everything = sub.add_parser("all", help="every missing part of both halves, in order, then the verdicts: "
                                            "the whole study from a fresh clone")
    everything.add_argument("--out", default=str(STUDY))
    sub.add_parser("status", help="finished and missing parts")
    sub.add_parser("register", help="record the study profiles' digests (after a deliberate, logged change)")
    verdicts = sub.add_parser("verdicts", help="finished parts -> reports/study/ (values, verdicts, claims.md/.tex/.png)")
    verdicts.add_argument("--out", default=str(STUDY))
    args = parser.parse_args(argv)
    interrupt_on_sigterm()
    if args.command == "run":
        for seed in args.seed:
            run_part(args.half, seed, args.pilot, args.update)
    elif args.command == "status":
        print("\n".join(status_lines()))
    elif args.command == "register":
        print(json.dumps(register(), indent=1))
    elif args.command == "all":
        for half, seed in missing_parts():
            run_part(half, seed)
        return render_verdicts(Path(args.out))
    else:
        return render_verdicts(Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
