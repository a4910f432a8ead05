"""Stop a `paper`-profile `dvc repro` at once on a machine that cannot run it.

    python -m common.profile_check [--params params.yaml] [--out runs/profile.json]

The `check_profile` stage runs this before any pretraining stage. The `paper` profile (ImageNet,
ResNet-50 / ReActNet-A, hundreds of epochs) needs CUDA GPUs and `torchrun`; on a machine without
CUDA it exits with code 2 and one line saying so, instead of starting a multi-week CPU run.
`smoke` and `mini` run anywhere. Both paper parameter files (profiles/paper.yaml,
profiles/paper_small_data.yaml) say `profile: paper`. The output file records the profile and the
device found.
"""
from __future__ import annotations

import argparse
from typing import Sequence


from common.checkpoint import write_json
from common.config import cli_main, read_yaml_mapping
from common.errors import ConfigError

PROFILES = ("smoke", "mini", "paper")


def check_profile(params: dict, cuda_available: bool) -> str:
    profile = params.get("profile")
    if profile not in PROFILES:
        raise ConfigError(f"params.yaml: 'profile' should be one of {list(PROFILES)}, got {profile!r}")
    if profile == "paper" and not cuda_available:
        raise ConfigError("profile 'paper' needs CUDA GPUs (run it with torchrun on a GPU machine, see README "
                          "'Profiles'); this machine has none. Switch with `make profile PROFILE=smoke` or `PROFILE=mini`")
    return profile


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.profile_check", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default=None, help="JSON file recording the profile and device")
    args = parser.parse_args(argv)
    params = read_yaml_mapping(args.params, "--params")
    import torch

    cuda = torch.cuda.is_available()
    profile = check_profile(params, cuda)
    if args.out:
        write_json({"profile": profile, "cuda": cuda}, args.out)
    print(f"profile {profile}: ok ({'CUDA' if cuda else 'CPU'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
