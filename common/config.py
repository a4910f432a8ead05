"""Reading params.yaml with command-line overrides, and the one-line error exit of every CLI.

A stage's CLI reads the parameter file (params.yaml by default: the active profile), applies
``key.sub=value`` overrides (values parsed as YAML, so ``precision=4-16``, ``cq.train.lr=0.5``,
``cq.quant.grad_bits=null`` all work) and passes plain dicts on.
"""
from __future__ import annotations

import copy
import sys
from functools import wraps
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from common.errors import EXIT_BAD_INPUT, ConfigError


def load_params(path: str | Path = "params.yaml", overrides: Sequence[str] = ()) -> dict:
    """The parameter dict of ``path`` with ``key.sub=value`` overrides applied."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path}: not found")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"params file {path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(params, dict):
        raise ConfigError(f"params file {path}: expected a mapping at the top level")
    return apply_overrides(params, overrides)


def apply_overrides(params: dict, overrides: Sequence[str]) -> dict:
    params = copy.deepcopy(params)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. precision=4-16")
        value = yaml.safe_load(text) if text else None
        node = params
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[leaf] = value
    return params


def section(params: dict, dotted: str) -> Any:
    """``section(params, "cq.train")``; a missing key is one clear error."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"params: missing {dotted!r} (no {part!r})")
        node = node[part]
    return node


def train_settings(paper_cfg: dict, method: str) -> dict:
    """A paper section's `train` settings with `train_by_method.<method>` laid over them: base
    methods have their own published optimizer settings (e.g. SimCLR's and BYOL's LARS learning
    rates and weight decays differ)."""
    by_method = paper_cfg.get("train_by_method") or {}
    if not isinstance(by_method, dict) or not all(isinstance(v, dict) or v is None for v in by_method.values()):
        raise ConfigError(f"train_by_method: expected {{method: {{setting: value}}}}, got {by_method!r}")
    return {**section(paper_cfg, "train"), **(by_method.get(method) or {})}


def cli_main(fn: Callable[[Sequence[str] | None], int | None]) -> Callable[[Sequence[str] | None], int]:
    """Wrap a CLI ``main``: a ConfigError prints one line to stderr and exits with code 2."""
    @wraps(fn)
    def wrapped(argv: Sequence[str] | None = None) -> int:
        try:
            return fn(argv) or 0
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
    return wrapped
