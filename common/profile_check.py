"""Check params.yaml before any stage runs: the `check_profile` stage, first in the pipeline.

    python -m common.profile_check [--params params.yaml] [--out runs/profile.json]

Two checks, each one line and exit code 2 on failure:
- the values every stage reads (profile, seeds, precision sets, the training settings of every
  listed method) are valid, so a bad `dvc exp run -S precision=abc` stops here, in seconds, and
  not after the stages before the one that reads it. DVC leaves an `-S` value in params.yaml when
  the run fails, so the message says so;
- the `paper` profile (ImageNet, ResNet-50 / ReActNet-A, hundreds of epochs) needs CUDA GPUs and
  `torchrun`: without CUDA it stops instead of starting a multi-week CPU run. `smoke` and `mini`
  run anywhere. Both paper parameter files (profiles/paper.yaml, profiles/paper_small_data.yaml)
  say `profile: paper`.
The output file records the profile and the device found; it changes only when they do, so the
stage re-running (it is always run) does not re-run the stages after it.
"""
from __future__ import annotations

from typing import Sequence


from common.checkpoint import write_json
from common.config import ArgumentParser, cli_main, read_params_file, section, seed_of, train_settings
from common.errors import ConfigError

PROFILES = ("smoke", "mini", "paper", "study")


def check_profile(params: dict, cuda_available: bool) -> str:
    profile = params.get("profile")
    if profile not in PROFILES:
        raise ConfigError(f"params.yaml: 'profile' should be one of {list(PROFILES)}, got {profile!r}")
    if profile == "paper" and not cuda_available:
        raise ConfigError("profile 'paper' needs CUDA GPUs (run it with torchrun on a GPU machine, see README "
                          "'Profiles'); this machine has none. Switch with `make profile PROFILE=smoke` or `PROFILE=mini`")
    return profile


def burn_methods(params: dict) -> list[str]:
    """Every method a BURN-side stage trains: BURN itself, the distilled and the other baselines,
    the teacher's method."""
    burn = params.get("burn") or {}
    teacher = (burn.get("teacher") or {}).get("method")
    return ["burn", *(burn.get("distill") or []), *(burn.get("baselines") or []), *([teacher] if teacher else [])]


def validate_params(params: dict) -> None:
    """Every value a stage reads that can be checked without data: one ConfigError naming the field
    (what depends on the registries and on other keys first, then every key and kind the schema fixes)."""
    from common.engine import TrainConfig
    from common.quant import parse_precision_set
    from common.runs import precision_sets, profile_seeds, teacher_seeds, two_stage
    from common.schema import check_params

    seed = seed_of(params)
    profile_seeds(params)
    burn = params.get("burn") or {}
    if "burn" in params and not teacher_seeds(params) and (burn.get("runs") or burn.get("distill")):
        raise ConfigError("burn.teacher.seeds: empty, but burn.runs / burn.distill distil from the teacher")
    if "burn" in params:
        two_stage(burn)
    if "precision" in params:
        parse_precision_set(params["precision"])
    for spec in precision_sets(params)["sets"]:
        try:
            parse_precision_set(spec)
        except ConfigError as err:
            raise ConfigError(f"cq.precision_sets.sets: {err}") from None
    from common.methods import registry

    known = {"cq": registry.cq_methods(), "burn": ["burn", "s2bnn", *registry.list_methods()]}
    for paper, methods in (("cq", section(params, "cq.methods") if "cq" in params else []),
                           ("burn", burn_methods(params) if "burn" in params else [])):
        if not isinstance(methods, list):
            raise ConfigError(f"{paper}.methods: expected a list of method names, got {methods!r}")
        unknown = [m for m in methods if m not in known[paper]]
        if unknown:
            raise ConfigError(f"{paper}: method {unknown[0]!r} is not registered for this paper; expected one "
                              f"of {known[paper]} (common/methods/registry.py)")
        if methods:  # the shared settings first, so that a fault is named where it is written
            TrainConfig.from_dict({"seed": seed, **section(params, f"{paper}.train")}, where=f"{paper}.train")
        for method in methods:
            TrainConfig.from_dict({"seed": seed, **train_settings(params, paper, method)},
                                  where=f"{paper}.train_by_method.{method}")
    check_appendix(params, registry.list_methods())
    check_params(params)


def check_appendix(params: dict, base_methods: list[str]) -> None:
    """`burn.appendix.runs` name base methods, variants of `burn.baseline_variants` and valid
    training settings (`burn.appendix.train` merged last, as burn.pretrain --appendix does)."""
    from common.engine import TrainConfig
    from common.runs import appendix_parts, appendix_runs

    burn = params.get("burn") or {}
    extra = (burn.get("appendix") or {}).get("train") or {}
    for descriptor in appendix_runs(params):
        method, variant, _ = appendix_parts(descriptor)
        if method not in base_methods:
            raise ConfigError(f"burn.appendix.runs: {descriptor}: {method!r} is not a base method ({base_methods})")
        known = ((burn.get("baseline_variants") or {}).get(method)) or {}
        if variant is not None and variant not in known:
            raise ConfigError(f"burn.appendix.runs: {descriptor}: no variant {variant!r} in "
                              f"burn.baseline_variants.{method} (have {sorted(known)}; base: the method's own)")
        TrainConfig.from_dict({"seed": seed_of(params), **train_settings(params, "burn", method), **extra},
                              where=f"burn.appendix.train ({descriptor})")


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m common.profile_check", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default=None, help="JSON file recording the profile and device")
    args = parser.parse_args(argv)
    params = read_params_file(args.params, "--params")
    try:
        validate_params(params)
    except ConfigError as err:
        raise ConfigError(f"{args.params}: {err} (a failed `dvc exp run -S` leaves its value in the file: "
                          f"set it back, e.g. `git checkout {args.params}`)") from None
    import torch

    cuda = torch.cuda.is_available()
    profile = check_profile(params, cuda)
    if args.out:
        write_json({"profile": profile, "cuda": cuda}, args.out)
    print(f"profile {profile}: ok ({'CUDA' if cuda else 'CPU'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
