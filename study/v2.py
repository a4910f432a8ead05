"""The claims study, second edition: registered parts on the whole of CIFAR-10, and their record.

    python -m study.v2 run cq main --seed 1    # one part: one group of a half's arms, one seed
    python -m study.v2 queue                   # every missing part, seed by seed; resumes a killed one
    python -m study.v2 status                  # registered parts, finished and missing
    python -m study.v2 register                # record the protocol and profiles (before any result)

The protocol (reports/study/v2/protocol.yaml) names, per half, its profile (profiles/study2_*.yaml)
and its parts: groups of arms, each an overlay laid over the half's profile, sized so that one
part (one group, one seed) takes at most 150 minutes on a 2-core CPU. A part runs in its half's
worktree (`.study2/<half>`, at the commit the part records) with `dvc repro --single-item` per
stage, so a killed part started again goes on from the stage it was in. It then measures every
arm of reports/claims.yaml the workspace holds for its seed, the numbers (as the first edition)
and, for the suites that keep them, every test image's 0/1 correctness, and writes
reports/study/v2/parts/<half>-<group>-s<S>.json with the commit, the CPU model and the minutes,
and the records its numbers come from (every arm's metrics and training curves, every
evaluation's metrics) under reports/study/v2/runs/<half>-<group>-s<S>/ (study/archive.py;
`archive` writes them again from the workspace). Commit both: the verdicts (reports/study_v2.py)
read only finished parts.

BURN's FP teacher is not trained by a part: it is the teacher pilot's run (seed 0, chosen before
registration), copied into the workspace's teacher run folder before the part's first stage, as
the paper's fixed pretrained teacher. Its 11 MB encoder is not committed: a session on a fresh
checkout makes it again with `python -m study.pilot teacher` (resumable, about 40 minutes on a
2-core AMD EPYC), and each BURN part records the sha256 of the teacher it distilled from.

Registration (`register`) writes reports/study/v2/registered.json: the sha256 of the protocol
file and of each half's resolved profile. A test holds the files to it; a registered part that
finds either changed refuses to run.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

from common.checkpoint import atomic_write, write_json
from common.config import ArgumentParser, cli_main, dump_params, merge, read_params_file, read_yaml_mapping
from common.errors import ConfigError
from common.provenance import cpu_model
from common import runs
from reports import claims as claims_module
from study.v1 import STAGE_PREFIXES, profile_digest
from study import archive
from study.workspace import REPO, dvc, git, interrupt_on_sigterm, run_in_group, worktree

V2 = REPO / "reports" / "study" / "v2"
PROTOCOL = V2 / "protocol.yaml"
REGISTERED = V2 / "registered.json"
PARTS = V2 / "parts"
ARCHIVE = V2 / "runs"  # each part's run records (study/archive.py)
WORKSPACES = REPO / ".study2"
TEACHER = WORKSPACES / "pilot" / "runs" / "teacher" / "s0"  # the teacher pilot's run (study.pilot)


V1_VERDICTS = REPO / "reports" / "study" / "verdicts.json"
POWER, ALPHA = 0.80, 0.05


def power_table(verdicts_path: Path = V1_VERDICTS, seeds: int = 3) -> dict:
    """Seeds per claim for 80 % power at the paper's effect (two-sided 5 % paired t test), from the
    first edition's seed-level standard deviation of the paired difference; a claim the first
    edition did not run borrows the median SD of its paper's claims measured by the same suite.
    Also the power that `seeds` seeds give. Rounded, so the registered table reads back equal."""
    from reports.stats import paired_t_power, seeds_for_power

    rows = json.loads(verdicts_path.read_text())
    claims = {c.id: c for c in claims_module.load_claims()}
    pooled: dict[tuple, list] = {}
    for r in rows:
        if r.get("sd"):
            pooled.setdefault((r["paper"], claims[r["id"]].eval["suite"]), []).append(r["sd"])
    out = {}
    for r in rows:
        suite = claims[r["id"]].eval["suite"]
        sd, source = (r["sd"], "first edition") if r.get("sd") else (None, None)
        if sd is None and pooled.get((r["paper"], suite)):
            values = sorted(pooled[(r["paper"], suite)])
            sd, source = values[len(values) // 2], f"median of the first edition's {r['paper']} {suite} claims"
        effect = r.get("paper_effect")
        if sd is None or effect is None:
            out[r["id"]] = {"sd": None, "paper_effect": effect, "seeds_for_80": None,
                            f"power_at_{seeds}": None, "source": "no estimate (no paper number or no SD)"}
            continue
        out[r["id"]] = {"sd": round(sd, 3), "paper_effect": effect,
                        "seeds_for_80": seeds_for_power(effect, sd, POWER, minimum=3, maximum=50),
                        f"power_at_{seeds}": round(paired_t_power(effect, sd, seeds, ALPHA), 2), "source": source}
    return out


def protocol() -> dict:
    return read_yaml_mapping(PROTOCOL, "study protocol")


def half_spec(half: str) -> dict:
    halves = protocol()["halves"]
    if half not in halves:
        raise ConfigError(f"half {half!r}: expected one of {', '.join(halves)}")
    return halves[half]


def half_profile(half: str) -> dict:
    path = half_spec(half)["profile"]
    return read_params_file(REPO / path, path)


def part_params(half: str, group: str, seed: int, profile: dict | None = None) -> dict:
    """The half's profile with the group's overlay, the part's one seed and the data root absolute."""
    spec, seeds = half_spec(half), protocol()["seeds"]
    if group not in spec["parts"]:
        raise ConfigError(f"part {half} {group!r}: expected one of {', '.join(spec['parts'])}")
    if seed not in seeds:
        raise ConfigError(f"--seed {seed}: not a registered seed ({seeds})")
    overlay = spec["parts"][group] or {}
    params = merge(profile if profile is not None else half_profile(half), overlay)
    # a suite the overlay sets to null is dropped; the overlay's `variants` of a suite replace the profile's
    suites = (params.get("eval") or {}).get("suites") or {}
    for name, suite in ((overlay.get("eval") or {}).get("suites") or {}).items():
        if suite is None:
            suites.pop(name, None)
        elif "variants" in suite:
            suites[name]["variants"] = suite["variants"]
    data = dict(params.get("data") or {})
    data["root"] = str((REPO / data.get("root", "data")).resolve())
    return {**params, "seeds": [seed], "data": data}


def part_path(half: str, group: str, seed: int) -> Path:
    return PARTS / f"{half}-{group}-s{seed}.json"


def digests() -> dict:
    return {"protocol": {"file": str(PROTOCOL.relative_to(REPO)), "sha256": hashlib.sha256(PROTOCOL.read_bytes()).hexdigest()},
            **{half: {"profile": spec["profile"], "sha256": profile_digest(half_profile(half))}
               for half, spec in protocol()["halves"].items()}}


def register() -> dict:
    if any(PARTS.glob("*.json")):
        raise ConfigError(f"{PARTS} holds finished parts: a registration comes before any result")
    found = digests()
    write_json(found, REGISTERED)
    return found


def check_registered() -> None:
    if not REGISTERED.is_file():
        raise ConfigError(f"{REGISTERED.relative_to(REPO)}: missing; register the protocol before any part runs")
    if json.loads(REGISTERED.read_text()) != digests():
        raise ConfigError("the protocol or a study profile changed since registration; a change is registered "
                          "again and logged in reports/study/v2/RUN.md, never made silently")


def evaluated_keys(params: dict) -> set[str]:
    """The run keys a part evaluates: its arms (what its part file reports)."""
    return {key for suite in ((params.get("eval") or {}).get("suites") or {}).values()
            for key in runs.expand(suite.get("checkpoints") or [], params)}


def evaluates(run_key: str, params: dict) -> bool:
    """Whether the part evaluates an arm's run key (a key at the profile's own precision set,
    `...@6-16`, is the run without the suffix)."""
    key, _, precision = run_key.partition("@")
    evaluated = evaluated_keys(params)
    return run_key in evaluated or (key in evaluated and precision == str(params.get("precision")))


def needed(stage: str, params: dict) -> bool:
    """A pipeline always builds SimCLR's/BYOL's baselines and the untrained networks; a part runs
    those stages only when it evaluates such a run (another part of the same seed owns them)."""
    evaluated = evaluated_keys(params)
    owners = {"cq_baseline": [k for k in runs.cq_keys(params) if "-baseline-" in k],
              "cq_random_init": runs.cq_random_init_keys(params),
              "burn_random_init": runs.burn_random_init_keys(params)}
    for prefix, keys in owners.items():
        if stage.startswith(prefix + "@"):
            return bool(evaluated & set(keys))
    return True


def part_stages(half: str, ws: Path, params: dict) -> list[str]:
    """check_profile, the half's pretraining stages the part needs (never the teacher's: it is
    placed), its evaluation suites; DVC's names."""
    names = dvc(ws, "stage", "list", "--name-only", capture=True).split()
    prefixes = tuple(p for p in STAGE_PREFIXES[half] if p != "burn_teacher")
    pretraining = [n for n in names if n.startswith(prefixes) and needed(n, params)]
    suites = [f"eval@{suite}" for suite in (params.get("eval") or {}).get("suites") or {}]
    return ["check_profile", *pretraining, *suites]


def place_teacher(ws: Path, params: dict) -> None:
    """Copy the registered teacher into the workspace's teacher run folder (once)."""
    burn = params.get("burn") or {}
    if not burn.get("runs") and not burn.get("distill"):
        return
    teacher = burn["teacher"]
    folder = ws / runs.RUNS.name / "burn" / runs.teacher_name(teacher["method"], teacher["backbone"])
    folder = folder / runs.seed_folder(runs.teacher_seeds(params)[0])
    if not (TEACHER / runs.ENCODER).is_file():
        raise ConfigError(f"{TEACHER.relative_to(REPO)}: no teacher; make it first with `python -m study.pilot teacher`")
    if not (folder / runs.ENCODER).is_file():
        folder.mkdir(parents=True, exist_ok=True)
        for name in (runs.ENCODER, runs.CHECKPOINT, runs.METRICS):
            shutil.copy2(TEACHER / name, folder / name)


def harvest(params: dict, root: Path, seed: int) -> tuple[dict, dict]:
    """(numbers, per-image correctness) of every claim arm this part evaluates, for `seed` (the
    teacher's under its own seed): each measurement belongs to exactly one part of a seed."""
    claims = claims_module.load_claims()
    teacher = {claims_module.measurement_key(claims_module.TEACHER, {"suite": s, "key": "top1"})
               for s in claims_module.SANITY_SUITES}
    owned = {claims_module.measurement_key(arm, what) for arm, what in claims_module.wanted_measurements(claims)
             if evaluates(claims_module.run_key(arm, params), params)}

    def mine(found: dict) -> dict:
        kept = {key: {str(s): v for s, v in by_seed.items() if s == seed or key in teacher}
                for key, by_seed in found.items() if key in owned}
        return {k: v for k, v in kept.items() if v}
    return (mine(claims_module.harvest(claims, params, root)),
            mine(claims_module.harvest_per_image(claims, params, root)))


def parts_commit() -> str | None:
    """The one commit every finished part ran (None before the first): the study's code. Parts at
    two commits would compare arms trained by different code."""
    commits = {json.loads(p.read_text())["commit"] for p in PARTS.glob("*.json")}
    if len(commits) > 1:
        raise ConfigError(f"{PARTS}: parts ran at {len(commits)} commits ({', '.join(sorted(c[:9] for c in commits))})")
    return next(iter(commits), None)


def part_workspace(half: str, update: bool = False) -> Path:
    """The half's worktree at the study's code: made at the finished parts' commit (a fresh
    checkout rebuilds the code they ran, not today's HEAD); refused where it holds other code,
    unless `update` moves it to HEAD on purpose (registered again, logged in RUN.md)."""
    code = parts_commit()
    ws = worktree(WORKSPACES / half, update, commit=code or "HEAD")
    at = git("rev-parse", "HEAD", cwd=ws)
    if code and at != code and not update:
        raise ConfigError(f"{ws} is at {at[:9]}, the finished parts at {code[:9]}: "
                          f"check out {code[:9]} there (or --update, registered again)")
    return ws


def run_part(half: str, group: str, seed: int, update: bool = False) -> Path:
    check_registered()
    ws = part_workspace(half, update)
    spec_profile = read_params_file(ws / half_spec(half)["profile"], half_spec(half)["profile"])  # the workspace's own
    params = part_params(half, group, seed, spec_profile)
    text = dump_params(params)
    if not (ws / "params.yaml").is_file() or (ws / "params.yaml").read_text() != text:
        atomic_write(ws / "params.yaml", lambda tmp: tmp.write_text(text))
    for folder in ("runs/cq", "runs/burn"):  # the evaluation stages depend on both
        (ws / folder).mkdir(parents=True, exist_ok=True)
    place_teacher(ws, params)
    start = time.time()
    for stage in part_stages(half, ws, params):
        print(f"[study v2 {half} {group} s{seed}] dvc repro -s {stage}", flush=True)
        dvc(ws, "repro", "--single-item", stage)
    values, per_image = harvest(params, ws / "runs", seed)
    teacher = TEACHER / runs.ENCODER
    record = {"half": half, "group": group, "seed": seed, "commit": git("rev-parse", "HEAD", cwd=ws),
              "teacher_sha256": hashlib.sha256(teacher.read_bytes()).hexdigest() if half == "burn" else None,
              "cpu": cpu_model(), "minutes_this_sitting": round((time.time() - start) / 60, 1),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "values": values, "per_image": per_image}
    path = part_path(half, group, seed)
    write_json(record, path)
    print(f"[study v2 {half} {group} s{seed}] finished -> {path.relative_to(REPO)}")
    archive_runs(half, group, seed, ws, params)
    return path


def queue_order() -> list[tuple[str, str, int]]:
    """Every registered part, seed by seed (a seed's parts of both halves before the next seed's):
    a study cut short still has whole seeds to compare."""
    spec = protocol()
    return [(half, group, seed) for seed in spec["seeds"]
            for half, h in spec["halves"].items() for group in h["parts"]]


def ensure_teacher() -> None:
    """A fresh checkout has no teacher (its encoder is not committed): make it again with the
    teacher pilot run at the study's code, in a worktree of its own (`.study2/teacher`), and place
    its run where the BURN parts read it. The pilot's record there is kept beside the logs, not over
    the committed pilot record."""
    if (TEACHER / runs.ENCODER).is_file():
        return
    ws = worktree(WORKSPACES / "teacher", commit=parts_commit() or "HEAD")
    profile = half_spec("burn")["profile"]
    root = Path(read_params_file(REPO / profile, profile)["data"]["root"])
    seen = ws / root  # the pilot resolves the data root against its own checkout
    if not root.is_absolute() and not seen.exists():
        seen.parent.mkdir(parents=True, exist_ok=True)
        seen.symlink_to((REPO / root).resolve())
    print(f"[study v2] no teacher: python -m study.pilot teacher in {ws.relative_to(REPO)}", flush=True)
    code, _, _ = run_in_group([sys.executable, "-m", "study.pilot", "teacher"], ws, dict(os.environ))
    if code != 0:
        raise ConfigError(f"the teacher pilot in {ws}: exit {code}")
    built = ws / TEACHER.relative_to(REPO)
    TEACHER.mkdir(parents=True, exist_ok=True)
    for name in (runs.ENCODER, runs.CHECKPOINT, runs.METRICS):
        shutil.copy2(built / name, TEACHER / name)
    (WORKSPACES / "logs").mkdir(exist_ok=True)
    shutil.copy2(ws / "reports" / "study" / "v2" / "pilots" / "teacher-s0.json", WORKSPACES / "logs" / "teacher-rebuilt-s0.json")


def run_queue() -> int:
    """Run every missing part in queue order, making the teacher first where a BURN part needs it;
    the first failure stops the queue (a part started again resumes from its workspace)."""
    done = 0
    for half, group, seed in queue_order():
        if part_path(half, group, seed).is_file():
            continue
        if half == "burn":
            ensure_teacher()
        run_part(half, group, seed)
        done += 1
    return done


def archive_path(half: str, group: str, seed: int) -> Path:
    return ARCHIVE / f"{half}-{group}-s{seed}"


def archive_runs(half: str, group: str, seed: int, ws: Path | None = None, params: dict | None = None) -> list[Path]:
    """Commit-sized records of the part's run folders (study/archive.py): its arms' metrics and
    training curves, its evaluations' metrics."""
    ws = ws or WORKSPACES / half
    params = params or part_params(half, group, seed, read_params_file(ws / half_spec(half)["profile"],
                                                                       half_spec(half)["profile"]))
    teacher = (params.get("burn") or {}).get("teacher") or {}
    teacher_keys = {f"burn/{runs.teacher_name(teacher['method'], teacher['backbone'])}"} if teacher else set()
    suites = list((params.get("eval") or {}).get("suites") or {})
    keys = evaluated_keys(params)
    for key in list(keys):  # a stage-2 run's stage 1, trained by the same part
        section, name, _ = runs.parse_key(key.partition("@")[0])
        kind, what = runs.burn_run_kind(name) if section == "burn" else (None, None)
        if kind == "stage2":
            keys.add(f"burn/{runs.burn_stage_name(what, 1)}")
    written = archive.archive_part(ws / "runs", archive_path(half, group, seed), keys, seed, teacher_keys, suites)
    print(f"[study v2 {half} {group} s{seed}] {len(written)} run records -> "
          f"{archive_path(half, group, seed).relative_to(REPO)}")
    return written


def status_lines() -> list[str]:
    lines = []
    for half, spec in protocol()["halves"].items():
        for group in spec["parts"]:
            for seed in protocol()["seeds"]:
                path = part_path(half, group, seed)
                if path.is_file():
                    part = json.loads(path.read_text())
                    lines.append(f"{half} {group} s{seed}: finished {part['finished']} at {part['commit'][:9]} on {part['cpu']}")
                else:
                    lines.append(f"{half} {group} s{seed}: missing (python -m study.v2 run {half} {group} --seed {seed})")
    return lines


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m study.v2", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="one registered part (a group of a half's arms, one seed); resumes a killed one")
    run.add_argument("half")
    run.add_argument("group")
    run.add_argument("--seed", type=int, required=True)
    run.add_argument("--update", action="store_true", help="move the half's worktree to HEAD first")
    keep = sub.add_parser("archive", help="write a finished part's run records again from its workspace")
    keep.add_argument("half")
    keep.add_argument("group")
    keep.add_argument("--seed", type=int, required=True)
    sub.add_parser("status", help="finished and missing parts")
    sub.add_parser("queue", help="every missing part, seed by seed (makes the teacher first where missing)")
    sub.add_parser("register", help="record the protocol's and the profiles' digests (before any part)")
    args = parser.parse_args(argv)
    interrupt_on_sigterm()
    if args.command == "run":
        run_part(args.half, args.group, args.seed, args.update)
    elif args.command == "archive":
        if not part_path(args.half, args.group, args.seed).is_file():
            raise ConfigError(f"part {args.half} {args.group} s{args.seed}: not finished; nothing to archive")
        archive_runs(args.half, args.group, args.seed)
    elif args.command == "status":
        print("\n".join(status_lines()))
    elif args.command == "queue":
        print(f"[study v2] queue: {run_queue()} parts run; none missing")
    else:
        print(json.dumps(register(), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
