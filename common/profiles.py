"""The profiles: named parameter files in profiles/, each the settings shared by every profile
(profiles/base.yaml) plus its own (``extends: base``, merged by `common.config.read_params_file`).

DVC reads params.yaml and knows nothing of a base file, so the active profile is rendered into a
plain params.yaml: ``python -m common.profiles smoke --out params.yaml`` (``make profile
PROFILE=smoke``). The rendered file holds the merged values only; the comments that give each
setting's source stay in the profile files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from common.checkpoint import atomic_write
from common.config import ArgumentParser, cli_main, dump_params, read_params_file
from common.errors import ConfigError

FOLDER = Path(__file__).resolve().parents[1] / "profiles"
BASE = "base"  # not a profile: the settings every profile extends


def names(folder: Path = FOLDER) -> list[str]:
    """The profiles that can be made active (every file in the folder but the base)."""
    return sorted(p.stem for p in folder.glob("*.yaml") if p.stem != BASE)


def profile_path(name: str, folder: Path = FOLDER) -> Path:
    if name not in names(folder):
        raise ConfigError(f"profile {name!r}: not in {folder} (profiles: {', '.join(names(folder))})")
    return folder / f"{name}.yaml"


def load(name: str, folder: Path = FOLDER) -> dict:
    """A profile's parameters, its base merged under it, every key and value checked by the schema."""
    from common.schema import check_params

    params = read_params_file(profile_path(name, folder), "profile")
    try:
        check_params(params)
    except ConfigError as err:
        raise ConfigError(f"profiles/{name}.yaml: {err}") from None
    return params


def render(name: str, folder: Path = FOLDER) -> str:
    """The profile as DVC reads it: one plain YAML mapping, with a header naming its sources."""
    header = (f"# Rendered from profiles/{BASE}.yaml and profiles/{name}.yaml by `make profile PROFILE={name}`\n"
              "# (python -m common.profiles). Edit those files and render again; DVC reads this one.\n")
    return header + dump_params(load(name, folder))


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m common.profiles", description=__doc__.splitlines()[0])
    parser.add_argument("name", help="a profile: a file in profiles/ other than base.yaml")
    parser.add_argument("--out", help="write here (e.g. params.yaml) instead of printing")
    args = parser.parse_args(argv)
    text = render(args.name)
    if args.out:
        atomic_write(args.out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
