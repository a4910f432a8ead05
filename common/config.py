"""Reading params.yaml with command-line overrides, and the one-line error exit of every CLI.

A stage's CLI reads the parameter file (params.yaml by default: the active profile), applies
``key.sub=value`` overrides (values parsed as YAML, so ``precision=4-16``, ``cq.train.lr=0.5``,
``cq.quant.grad_bits=null`` all work) and passes plain dicts on.

One YAML reading for every parameter and mapping file, and for overrides: YAML 1.2 numbers, so
``1e-3`` is a float as it is for `dvc exp run -S` (PyYAML's YAML 1.1 reads it as a string);
invalid YAML or a file that is not a mapping is one ConfigError naming the file.

A parameter file may name a base file beside it, ``extends: base`` (profiles/base.yaml holds what
every profile shares): the base is read first and the file's own settings are laid over it
(`merge`). DVC cannot follow that, so the active params.yaml is the rendered, plain result
(`common.profiles`).
"""
from __future__ import annotations

import argparse
import copy
import re
import sys
from functools import wraps
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from common.errors import EXIT_BAD_INPUT, ConfigError


EXTENDS = "extends"  # a parameter file's base file, by name, in the same folder


class ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: 1e-3, 1E+5, .5, 5. are floats."""


class ParamsDumper(yaml.SafeDumper):
    """The writer that matches ParamsLoader: a string such as "1e-3" is quoted, so it reads back
    as a string here and in DVC."""


_YAML12_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+][0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X)
for _cls in (ParamsLoader, ParamsDumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _YAML12_FLOAT, list("-+0123456789."))


def dump_params(data: Any, flow: bool | None = None) -> str:
    """Parameters as YAML text that parse_yaml (and DVC) read back to the same values; key order kept.
    `flow=True` gives one line (a mapping on a command line)."""
    return yaml.dump(data, Dumper=ParamsDumper, sort_keys=False, default_flow_style=flow, width=100,
                     allow_unicode=True)


def parse_yaml(text: str, source: str) -> Any:
    """YAML text -> Python (YAML 1.2 numbers); invalid YAML is a ConfigError naming `source`."""
    try:
        return yaml.load(text, Loader=ParamsLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML ({str(err).splitlines()[0]})") from None


def read_yaml_mapping(path: str | Path, what: str = "params file") -> dict:
    """A YAML file whose top level is a mapping (an empty file is {}); one ConfigError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path}: not found")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{what} {path}: cannot be read ({err})") from None
    data = parse_yaml(text, f"{what} {path}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: expected a mapping at the top level, got a {type(data).__name__}")
    return data


def load_params(path: str | Path = "params.yaml", overrides: Sequence[str] = ()) -> dict:
    """The parameter dict of ``path`` (its base laid under it) with ``key.sub=value`` overrides
    applied, every key one the schema knows (common/schema.py: a misspelt key is refused, not
    ignored)."""
    from common.schema import check_params

    params = apply_overrides(read_params_file(path), overrides)
    check_params(params)
    return params


def read_params_file(path: str | Path, what: str = "params file") -> dict:
    """A parameter file with the file it `extends` (and that one's base, ...) merged under it."""
    chain = extends_chain(path, what)
    out = chain[0]
    for data in chain[1:]:
        out = merge(out, data)
    return out


def extends_chain(path: str | Path, what: str = "params file", _seen: tuple[Path, ...] = ()) -> list[dict]:
    """The files a parameter file extends, the farthest base first and the file itself last, each
    as written (its `extends` key taken out); `read_params_file` merges them in that order."""
    path = Path(path)
    data = read_yaml_mapping(path, what)
    base = data.pop(EXTENDS, None)
    if base is None:
        return [data]
    if not isinstance(base, str) or not base or "/" in base:
        raise ConfigError(f"{what} {path}: {EXTENDS}: expected the name of a file beside it, e.g. base, got {base!r}")
    base_path = path.parent / f"{base}.yaml"
    if base_path.resolve() in _seen or base_path.resolve() == path.resolve():
        raise ConfigError(f"{what} {path}: {EXTENDS}: {base} extends itself (a cycle)")
    return [*extends_chain(base_path, f"base of {path}:", (*_seen, path.resolve())), data]


def merge(base: dict, over: dict) -> dict:
    """`over` laid over `base`: mappings merge key by key, anything else (a value, a list) in `over`
    replaces the base's. Keys keep `over`'s order, the base's other keys follow."""
    out = {}
    for key, value in over.items():
        below = base.get(key)
        out[key] = merge(below, value) if isinstance(below, dict) and isinstance(value, dict) else copy.deepcopy(value)
    out.update((k, copy.deepcopy(v)) for k, v in base.items() if k not in over)
    return out


def seed_of(params: dict) -> int:
    """The seed of this run: `seed` (what a pipeline stage passes, `seed=N`), else the first of the
    profile's `seeds`, else 0. An integer (one ConfigError otherwise)."""
    seeds = params.get("seeds")
    seed = params.get("seed", seeds[0] if isinstance(seeds, list) and seeds else 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed: expected an integer, got {seed!r}")
    return seed


def apply_overrides(params: dict, overrides: Sequence[str]) -> dict:
    params = copy.deepcopy(params)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. precision=4-16")
        value = parse_yaml(text, f"override {item!r}") if text else None
        node = params
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[leaf] = value
    return params


def section(params: dict, dotted: str, where: str = "") -> Any:
    """``section(params, "cq.train")``; a missing key is one clear error naming the full path
    (``where``: the path of ``params`` itself when it is a sub-section, e.g. "cq")."""
    node: Any = params
    full = f"{where}.{dotted}" if where else dotted
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"params: missing {full!r}")
        node = node[part]
    return node


def train_settings(params: dict, paper: str, method: str) -> dict:
    """`<paper>.train` with `<paper>.train_by_method.<method>` laid over it: base methods have their
    own published optimizer settings (e.g. SimCLR's and BYOL's LARS learning rates differ)."""
    train = section(params, f"{paper}.train")
    by_method = section(params, paper).get("train_by_method") or {}
    if not isinstance(train, dict):
        raise ConfigError(f"{paper}.train: expected a mapping of settings, got {train!r}")
    if not isinstance(by_method, dict) or not all(isinstance(v, dict) or v is None for v in by_method.values()):
        raise ConfigError(f"{paper}.train_by_method: expected {{method: {{setting: value}}}}, got {by_method!r}")
    return {**train, **(by_method.get(method) or {})}


class ArgumentParser(argparse.ArgumentParser):
    """argparse for every CLI of the project: a bad command line (an unknown option, a value of the
    wrong type, a missing argument) is one ConfigError, so `cli_main` prints it as one line and exits
    2, instead of argparse's usage block and its own exit."""

    def error(self, message: str):
        raise ConfigError(f"{self.prog}: {message} (--help lists the arguments)")


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (a batch, a size, a count of images)."""
    return _bounded(text, int, lambda v: v >= 1, "an integer >= 1")


def count(text: str) -> int:
    """An argparse type: an integer >= 0 (loader workers, ...)."""
    return _bounded(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_number(text: str) -> float:
    """An argparse type: a finite number > 0 (a temperature, a learning rate)."""
    return _bounded(text, float, lambda v: 0 < v < float("inf"), "a finite number > 0")


def _bounded(text: str, kind: type, ok: Callable[[Any], bool], what: str):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def cli_main(fn: Callable[[Sequence[str] | None], int | None]) -> Callable[[Sequence[str] | None], int]:
    """Wrap a CLI ``main``: a ConfigError, or an output that cannot be written (a file where a
    folder should be, a read-only place), prints one line to stderr and exits with code 2."""
    @wraps(fn)
    def wrapped(argv: Sequence[str] | None = None) -> int:
        try:
            return fn(argv) or 0
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except (NotADirectoryError, PermissionError, FileExistsError, IsADirectoryError) as err:
            print(f"error: cannot write {err.filename}: {err.strerror}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except OSError as err:
            if err.filename is None:
                return _unexpected(err)
            print(f"error: {err.filename}: {err.strerror or err}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except Exception as err:  # noqa: BLE001 - the CLI boundary: one line, never a traceback
            return _unexpected(err)
    return wrapped


# Exceptions raised inside torch that a setting causes: (message fragment, the setting to name).
LIKELY_SETTING = (
    ("Expected more than 1 value per channel", "train.batch_size (BatchNorm needs at least 2 images a step)"),
    ("out of memory", "train.batch_size (the batch does not fit the device's memory)"),
    ("DataLoader worker", "train.num_workers (a loader worker stopped)"),
)
EXIT_FAILED = 1  # an exception no setting explains: a defect, not bad input
TRACEBACK_ENV = "SSLQ_TRACEBACK"  # set to 1 for the full traceback of an unexpected exception


def _unexpected(err: BaseException) -> int:
    """One line for an exception that is not a ConfigError, naming the setting most likely
    responsible where the message says (exit 2), else the exception (exit 1)."""
    import os
    import traceback

    if os.environ.get(TRACEBACK_ENV) == "1":
        traceback.print_exception(err, file=sys.stderr)
    message = (str(err).strip().splitlines() or [""])[0][:300]
    for fragment, setting in LIKELY_SETTING:
        if fragment.lower() in str(err).lower():
            print(f"error: {setting}: {type(err).__name__}: {message}", file=sys.stderr)
            return EXIT_BAD_INPUT
    print(f"error: {type(err).__name__}: {message} (set {TRACEBACK_ENV}=1 for the traceback)", file=sys.stderr)
    return EXIT_FAILED


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    """`python -m common.config --describe [section]`: the parameter schema (common/schema.py)."""
    from common import schema

    parser = ArgumentParser(prog="python -m common.config", description="the parameter files' schema")
    parser.add_argument("--describe", nargs="?", const="", metavar="SECTION", required=True,
                        help="print every key of SECTION (e.g. cq, cq.quant; default: all)")
    print(schema.describe(parser.parse_args(argv).describe))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
