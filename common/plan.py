"""What `dvc repro` (or `dvc exp run -S ...`) would run, without running it: `make plan`.

    python -m common.plan [-S key=value ...] [stage ...]

DVC's own `dvc repro --dry` stops with "No such file or directory" as soon as a stage reads a file
that an earlier stage has not made yet, which is every stage of a fresh clone. This lists, in the
order DVC runs them, the stages that would run and why:
- a stage's own reason, from DVC's status: a missing or changed output, a changed dependency
  (code, data, a parameter), a changed command;
- `-S key=value` (as `dvc exp run -S`): the stages that track that parameter, when the value differs
  from params.yaml. The values are checked as `check_profile` checks them, so a bad one is
  reported here, before params.yaml is touched;
- "after X": a stage downstream of one that runs. It runs too when X's outputs change, which is
  the case for every stage that trains or evaluates. Stages marked always-changed (the params
  check) run every time but do not make the stages after them run.
With stage names, only those stages and what they depend on (as `dvc repro <stage>`).
"""
from __future__ import annotations

import sys
from typing import Any, Sequence

from common.config import apply_overrides, ArgumentParser, cli_main, read_params_file
from common.errors import ConfigError
from common.profile_check import validate_params


def _lookup(params: dict, dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def changed_keys(params: dict, overrides: Sequence[str]) -> list[str]:
    """The keys of `key=value` overrides whose value differs from `params`."""
    new = apply_overrides(params, overrides)
    keys = [item.partition("=")[0] for item in overrides]
    return [k for k in keys if _lookup(new, k) != _lookup(params, k)]


def _tracks(declared: str, key: str) -> bool:
    return declared == key or key.startswith(declared + ".") or declared.startswith(key + ".")


def _own_reason(stage, keys: Sequence[str]) -> str | None:
    """Why `stage` runs by itself: a parameter override, or what DVC's status finds changed."""
    tracked = sorted({k for dep in stage.deps for declared in getattr(dep, "params", None) or []
                      for k in keys if _tracks(declared, k)})
    if tracked:
        return "parameter " + ", ".join(tracked)
    reasons = []
    for entry in stage.status().get(stage.addressing, []):
        if isinstance(entry, str):  # "changed command", "always changed"
            reasons.append(entry)
            continue
        for kind, paths in entry.items():
            (first, what), more = next(iter(paths.items())), len(paths) - 1
            reasons.append(f"{kind}: {first} ({what})" + (f" +{more} more" if more else ""))
    return "; ".join(reasons) or None


def stage_plan(repo, keys: Sequence[str] = (), targets: Sequence[str] = ()) -> list[tuple[str, str]]:
    """[(stage, reason)] of every stage that would run, in DVC's order."""
    import networkx as nx
    from dvc.repo.reproduce import plan_repro

    graph = repo.index.graph  # edges point from a stage to the stages it depends on
    steps = plan_repro(graph)
    if targets:
        names = {s.addressing: s for s in steps}
        unknown = [t for t in targets if t not in names]
        if unknown:
            raise ConfigError(f"stage {unknown[0]!r}: not in dvc.yaml (e.g. {next(iter(names))!r})")
        keep = set()
        for t in targets:
            keep |= {names[t], *nx.descendants(graph, names[t])}
        steps = [s for s in steps if s in keep]
    runs: dict[Any, str] = {}
    propagates: set = set()
    with repo.lock:
        for stage in steps:
            reason = _own_reason(stage, keys)
            if reason and reason != "always changed":
                propagates.add(stage)
            upstream = [u for u in graph.successors(stage) if u in propagates]
            if not reason and upstream:
                more = f" (+{len(upstream) - 1})" if len(upstream) > 1 else ""
                reason = f"after {upstream[0].addressing}{more}"
                propagates.add(stage)
            if reason:
                runs[stage] = reason
    return [(s.addressing, r) for s, r in runs.items()]


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m common.plan", description=__doc__.splitlines()[0])
    parser.add_argument("-S", "--set-param", action="append", default=[], metavar="KEY=VALUE",
                        help="a parameter as `dvc exp run -S` would set it (repeatable)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("targets", nargs="*", help="stages to plan for (default: the whole pipeline)")
    args = parser.parse_args(argv)
    params = read_params_file(args.params, "--params")
    new = apply_overrides(params, args.set_param)
    try:
        validate_params(new)
    except ConfigError as err:
        raise ConfigError(f"{args.params}{' with -S' if args.set_param else ''}: {err}") from None
    from dvc.repo import Repo

    with Repo(".") as repo:
        plan = stage_plan(repo, changed_keys(params, args.set_param), args.targets)
    width = max((len(name) for name, _ in plan), default=0)
    for name, reason in plan:
        print(f"{name:<{width}}  {reason}")
    print(f"{len(plan)} stage(s) would run", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
