"""Aggregate the pipeline's metrics files into the measured-table JSON that `reports.render` reads.

    python -m reports.aggregate --out reports/measured.json [--params params.yaml] [--runs runs]

Reads ONLY metrics JSON files (``runs/eval/<suite>/<run>[/<variant>]/metrics.json``, written by
`eval.pipeline`) and the ``report`` section of params.yaml, which says which run feeds which cell
of which paper table, so each profile (smoke, mini, paper) has its own mapping:

    report:
      context: {dataset: "...", notes: "..."}          # every table (the profile is added)
      contexts: {cq: {network: "..."}, burn: {...}}    # per paper (table id prefix), optional
      tables:
        cq_table7:
          context: {network: "cifar_resnet20 (width 0.25) standing in for ResNet-34"}   # optional
          rows: {"ResNet-34 / SimCLR": cq/simclr-baseline-cifar_resnet20, ...}          # row key -> run
          columns: {"Fine-tune Acc. (FP) / 10% labels": "finetune/fp-10pct:top1*100", ...}
          cells: [["SimCLR", "ResNet-34", cq/simclr-baseline-..., "linear:top1*100"]]   # optional, explicit

A row key may hold ``{precision}``: it is replaced by the precision set the run's pretraining
metrics record (CQ Table 9), so a row never claims a set the run did not use.

A source ("finetune/fp-10pct:top1*100") names the suite, the variant sub-folder if any, the key in
the metrics file (dots go into nested objects: ``lowshot.4.cv.mean``) and a scale (fractions ->
%). The long form is a mapping: ``{suite, variant, key, scale, std, n}``, where ``std`` is a key of
the standard deviation (scaled alike) and ``n`` a key or a number (samples or trials).

Cell status: no metrics file -> "not run"; the evaluation's status "not run (pretraining
diverged)" (eval/guard.py) or "diverged" -> "diverged"; any other status than "ok" -> "not run".
A cell not in the mapping is "not run" (the renderer's default).

Choices where the brief is silent:
- A key missing from an existing metrics file is an error (a typo in the mapping), not "not run".
- The caption's network names the stand-in actually used (from the mapping's context), never
  only the paper's network; the profile comes from params.yaml's ``profile``.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence


from common.checkpoint import write_json
from common.config import cli_main, read_yaml_mapping
from common.errors import ConfigError
from reports.tables import DIVERGED, NOT_RUN, load_paper_tables, parse_measured

_SOURCE = re.compile(r"^(?P<suite>[\w.-]+)(?:/(?P<variant>[\w.-]+))?:(?P<key>[\w.-]+)(?:\*(?P<scale>[\d.eE+-]+))?$")
_CONTEXT_FIELDS = ("dataset", "network", "notes")


def parse_source(source: Any, where: str) -> dict:
    """'suite[/variant]:key[*scale]' or a mapping -> {suite, variant, key, scale, std, n}."""
    if isinstance(source, str):
        m = _SOURCE.match(source.strip())
        if not m:
            raise ConfigError(f"{where}: source {source!r}: expected 'suite[/variant]:key[*scale]'")
        return {"suite": m["suite"], "variant": m["variant"], "key": m["key"],
                "scale": float(m["scale"]) if m["scale"] else 1.0, "std": None, "n": None}
    if isinstance(source, Mapping) and "suite" in source and "key" in source:
        unknown = set(source) - {"suite", "variant", "key", "scale", "std", "n"}
        if unknown:
            raise ConfigError(f"{where}: unknown source field(s) {sorted(unknown)}")
        return {"variant": None, "scale": 1.0, "std": None, "n": None, **source}
    raise ConfigError(f"{where}: source {source!r}: expected a string or a mapping with suite and key")


def lookup(obj: Any, key: str, path: Path) -> Any:
    for part in key.split("."):
        if not isinstance(obj, Mapping) or part not in obj:
            raise ConfigError(f"{path}: no key {key!r} (report mapping)")
        obj = obj[part]
    return obj


def read_cell(runs: Path, run: str, source: dict) -> Any:
    """One measured cell: a number, {"value", "std", "n"}, or a status string."""
    folder = runs / "eval" / source["suite"] / run
    if source.get("variant"):
        folder = folder / source["variant"]
    path = folder / "metrics.json"
    if not path.is_file():
        return NOT_RUN
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err.msg})") from None
    status = metrics.get("status", "ok")
    if status == DIVERGED or "diverged" in str(status):
        return DIVERGED
    if status != "ok":
        return NOT_RUN
    scale = float(source.get("scale") or 1.0)
    value = lookup(metrics, source["key"], path)
    if value is None:
        return NOT_RUN
    cell: dict[str, Any] = {"value": float(value) * scale}
    if source.get("std"):
        std = lookup(metrics, source["std"], path)
        if std is not None:
            cell["std"] = float(std) * scale
    n = source.get("n")
    if isinstance(n, str):
        n = lookup(metrics, n, path)
    if n is not None:
        cell["n"] = int(n)
    return cell if len(cell) > 1 else cell["value"]


def precision_label(runs: Path, run: str) -> str | None:
    """The precision set a CQ pretraining run drew from ("6-16"), read from its own metrics file;
    None when the run is missing or recorded none."""
    path = runs / run / "metrics.json"
    if not path.is_file():
        return None
    bits = (json.loads(path.read_text()).get("method") or {}).get("precision_set") or []
    if not bits:
        return None
    bits = sorted(int(b) for b in bits)
    contiguous = bits == list(range(bits[0], bits[-1] + 1))
    return f"{bits[0]}-{bits[-1]}" if contiguous else ",".join(map(str, bits))


def row_key(row: str, run: str, runs: Path) -> str | None:
    """A row key, with "{precision}" filled from the run itself: a CQ Table 9 row then names the
    precision set the run really used (`dvc exp run -S precision=4-16` moves it to the 4-16 row)."""
    if "{precision}" not in row:
        return row
    label = precision_label(runs, run)
    return None if label is None else row.replace("{precision}", label)


def table_cells(table_id: str, spec: Mapping, runs: Path,
                known_rows: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    where = f"report.tables.{table_id}"
    unknown = set(spec) - {"context", "rows", "columns", "cells"}
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}")
    cells: dict[str, dict[str, Any]] = {}
    rows, columns = spec.get("rows") or {}, spec.get("columns") or {}
    for row, run in rows.items():
        templated, row = "{precision}" in str(row), row_key(str(row), str(run), runs)
        if row is None:  # "{precision}" of a run not there yet: its cells stay "not run"
            continue
        if templated and known_rows is not None and row not in known_rows:
            print(f"report.tables.{table_id}: {run} used precision set of row {row!r}, which the "
                  f"paper's table has not; left out")
            continue
        for column, source in columns.items():
            cells.setdefault(row, {})[column] = read_cell(runs, str(run), parse_source(source, where))
    for entry in spec.get("cells") or []:
        if not isinstance(entry, (list, tuple)) or len(entry) != 4:
            raise ConfigError(f"{where}.cells: expected [row, column, run, source] entries")
        row, column, run, source = entry
        cells.setdefault(row, {})[column] = read_cell(runs, str(run), parse_source(source, where))
    return cells


def _context(d: Any, where: str) -> dict:
    if d is None:
        return {}
    if not isinstance(d, Mapping) or set(d) - set(_CONTEXT_FIELDS):
        raise ConfigError(f"{where}: expected a mapping with {list(_CONTEXT_FIELDS)}")
    return dict(d)


def aggregate(params: Mapping, runs: str | Path = "runs") -> dict:
    """The measured structure of :mod:`reports.tables` for the profile's mapping."""
    report = params.get("report") or {}
    profile = params.get("profile")
    if not profile:
        raise ConfigError("params: expected a 'profile' (smoke | mini | paper)")
    contexts = report.get("contexts") or {}
    paper_tables = load_paper_tables()
    known = {t.id for t in paper_tables}
    out = {"context": {"profile": profile, **_context(report.get("context"), "report.context")}, "tables": {}}
    for table_id, spec in (report.get("tables") or {}).items():
        if table_id not in known:
            raise ConfigError(f"report.tables.{table_id}: not a table of paper_numbers.yaml")
        paper = table_id.split("_")[0]
        context = {**_context(contexts.get(paper), f"report.contexts.{paper}"),
                   **_context(spec.get("context"), f"report.tables.{table_id}.context")}
        rows = next(t for t in paper_tables if t.id == table_id).row_keys
        out["tables"][table_id] = {"context": context, "cells": table_cells(table_id, spec, Path(runs), rows)}
    parse_measured(out, paper_tables, "report mapping")  # validates row and column keys against the papers' tables
    return out


def load_report_params(path: str | Path = "params.yaml") -> dict:
    """params.yaml with its ``report`` section read from the file ``report_mapping`` names
    (a profile's mapping lives in reports/mapping/<profile>.yaml)."""
    params = read_yaml_mapping(path, "--params")
    mapping = params.get("report_mapping")
    if mapping is not None:
        params["report"] = read_yaml_mapping(mapping, "report_mapping").get("report")
        if not isinstance(params["report"], dict):
            raise ConfigError(f"report_mapping {mapping}: expected a 'report' section")
    return params


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.aggregate", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the measured JSON to write")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--runs", default="runs", help="the runs folder")
    args = parser.parse_args(argv)
    path = Path(args.params)
    if not path.is_file():
        raise ConfigError(f"--params {path}: file not found")
    measured = aggregate(load_report_params(path), args.runs)
    write_json(measured, args.out)
    n = sum(len(c) for t in measured["tables"].values() for c in t["cells"].values())
    print(f"{args.out}: {len(measured['tables'])} tables, {n} mapped cells")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
