"""Aggregate the pipeline's metrics files into the measured-table JSON that `reports.render` reads.

    python -m reports.aggregate --out reports/measured.json [--params params.yaml] [--runs runs]

Reads ONLY metrics JSON files (``runs/eval/<suite>/<run>/s<seed>[/<variant>]/metrics.json``,
written by `eval.pipeline`; the layout is common/runs.py's) and the ``report`` section of
params.yaml, which says which run (a run key of common/runs.py, over all its seeds) feeds which
cell of which paper table, so each profile (smoke, mini, paper) has its own mapping:

    report:
      context: {dataset: "...", notes: "..."}          # every table (the profile is added)
      contexts: {cq: {network: "..."}, burn: {...}}    # per paper (table id prefix), optional
      tables:
        cq_table7:
          context: {network: "cifar_resnet20 (width 0.25) standing in for ResNet-34"}   # optional
          rows: {"ResNet-34 / SimCLR": cq/simclr-baseline-cifar_resnet20, ...}          # row key -> run
          columns: {"Fine-tune Acc. (FP) / 10% labels": "finetune/fp-10pct:top1*100", ...}
          cells: [["SimCLR", "ResNet-34", cq/simclr-baseline-..., "linear:top1*100"]]   # optional, explicit
      headline: {cq2.CQ-C: [cq_table2, ResNet-18, CQ-C], ...}   # --headline: what `dvc exp show` lists first

A row key may hold ``{precision}``: it is replaced by the precision set the run's pretraining
metrics record (CQ Table 9), so a row never claims a set the run did not use.

A source ("finetune/fp-10pct:top1*100") names the suite, the variant sub-folder if any, the key in
the metrics file (dots go into nested objects: ``lowshot.4.cv.mean``) and a scale (fractions ->
%). The long form is a mapping: ``{suite, variant, key, scale, std, n}``, where ``std`` is a key of
the standard deviation (scaled alike) and ``n`` a key or a number (samples or trials).

Seeds: a run evaluated on several seeds gives the mean, the std, n and the half-width of the
95 % t interval (rendered "mean ± half-width (n=k)"); one seed gives its number as it is.
Cell status: no metrics file -> "not run"; the evaluation's status "not run (pretraining
diverged)" (eval/guard.py) or "diverged" on any seed -> "diverged"; any other status than "ok" ->
"not run". A cell not in the mapping is "not run" (the renderer's default).

A run key with @<set> (cq/simclr-cq_c-cifar_resnet20@8-16) reads the run trained at that precision
set (``cq.precision_sets``); with @* and a ``{precision}`` row, every set the run was trained at gets
its own row, so CQ Tables 1, 8 and 9 hold several sets side by side from one mapping line.

Choices where the papers and protocols are silent:
- A key missing from an existing metrics file is an error (a typo in the mapping), not "not run".
- The caption's network names the stand-in actually used (from the mapping's context), never
  only the paper's network; the profile comes from params.yaml's ``profile``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence


from common.checkpoint import write_json
from common.config import ArgumentParser, cli_main
from common.runs import DIVERGED, METRICS, NOT_RUN, OK, parse_key, resolve, run_precision, seed_folders, status_of
from reports import mapping
from reports.mapping import load_report_params
from reports.stats import mean_interval
from common.errors import ConfigError
from reports.tables import load_paper_tables, parse_measured

_CONTEXT_FIELDS = ("dataset", "network", "notes")


def lookup(obj: Any, key: str, path: Path) -> Any:
    for part in key.split("."):
        if not isinstance(obj, Mapping) or part not in obj:
            raise ConfigError(f"{path}: no key {key!r} (report mapping)")
        obj = obj[part]
    return obj


def read_one(path: Path, source: dict) -> Any:
    """One seed's number ({"value", "std", "n"} with a spread of trials), or its status."""
    if not path.is_file():
        return NOT_RUN
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err.msg})") from None
    status = status_of(metrics)
    if DIVERGED in status:  # DIVERGED and NOT_RUN_DIVERGED
        return DIVERGED
    if status != OK:
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
    return cell


def read_cell(runs: Path, run: str, source: dict) -> Any:
    """One measured cell of a run key over its seeds: one seed gives its number as it is; several
    give {"value": mean, "std", "n": seeds, "half": 95 % t half-width}. A seed that diverged makes
    the cell "diverged" (no mean hides it); no seed evaluated: "not run"."""
    folders = resolve(run, root=runs, under=runs / "eval" / source["suite"])
    per_seed = [read_one(folder / (source.get("variant") or "") / METRICS, source) for folder in folders.values()]
    if DIVERGED in per_seed:
        return DIVERGED
    numbers = [c for c in per_seed if isinstance(c, dict)]
    if not numbers:
        return NOT_RUN
    if len(numbers) == 1:
        cell = numbers[0]
        return cell if len(cell) > 1 else cell["value"]
    mean, sd, half = mean_interval([c["value"] for c in numbers])
    return {"value": mean, "std": sd, "n": len(numbers), "half": half}


def precision_label(runs: Path, run: str) -> str | None:
    """The precision set a CQ pretraining run drew from ("6-16"), read from its first seed's
    metrics file; None when the run is missing or recorded none."""
    folders = resolve(run, root=runs)
    return run_precision(next(iter(folders.values()))) if folders else parse_key(run)[2]


def every_set(entry: str, runs: Path) -> list[str]:
    """A run key, or `<key>@*`: the run at the profile's precision and at every other set it was
    trained at (p<set>/ folders), so one mapping row fills CQ Table 9's rows side by side. A set
    trained in both places is read once (from p<set>/, see common.runs.resolve)."""
    if not entry.endswith("@*"):
        return [entry]
    key = entry[:-2]
    group, name, _ = parse_key(key)
    found = {precision_label(runs, key): key} if resolve(key, root=runs) else {}
    for folder in sorted((runs / group / name).glob("p*")):
        if folder.is_dir() and seed_folders(folder):
            found[folder.name[1:]] = f"{key}@{folder.name[1:]}"
    return list(found.values())


def row_key(row: str, run: str, runs: Path) -> str | None:
    """A row key, with "{precision}" filled from the run itself: a CQ Table 9 row then names the
    precision set the run really used (`dvc exp run -S precision=4-16` moves it to the 4-16 row)."""
    if "{precision}" not in row:
        return row
    label = precision_label(runs, run)
    return None if label is None else row.replace("{precision}", label)


def table_cells(table_id: str, spec: Mapping, runs: Path,
                known_rows: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    cells: dict[str, dict[str, Any]] = {}
    rows, columns = mapping.table_rows(table_id, spec), mapping.table_columns(table_id, spec)
    for template, entry in rows:
        for run in every_set(entry, runs):
            templated, row = "{precision}" in template, row_key(template, run, runs)
            if row is None:  # "{precision}" of a run not there yet: its cells stay "not run"
                continue
            if templated and known_rows is not None and row not in known_rows:
                print(f"report.tables.{table_id}: {run} used precision set of row {row!r}, which the "
                      f"paper's table has not; left out")
                continue
            for column, source in columns:
                cells.setdefault(row, {})[column] = read_cell(runs, run, source)
    for row, column, run, source in mapping.table_cells(table_id, spec):
        cells.setdefault(row, {})[column] = read_cell(runs, run, source)
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


def headline(measured: Mapping, spec: Mapping | None) -> dict:
    """The few numbers `dvc exp show` lists first: {label: the measured mean of one table cell, or
    its status}. `spec` (the mapping's ``headline``): {label: [table id, row key, column]}; short
    labels keep the columns narrow enough for a terminal."""
    out: dict[str, Any] = {}
    papers = {t.id: t for t in load_paper_tables()} if spec else {}
    for label, where in (spec or {}).items():
        if not isinstance(where, (list, tuple)) or len(where) != 3:
            raise ConfigError(f"report.headline.{label}: expected [table id, row key, column]")
        table, row, column = where
        if table not in measured["tables"]:
            raise ConfigError(f"report.headline.{label}: table {table!r} is not in the mapping")
        paper = papers[table]
        if row not in paper.row_keys or column not in paper.columns:
            raise ConfigError(f"report.headline.{label}: no cell ({row!r}, {column!r}) in {table}")
        cell = measured["tables"][table]["cells"].get(row, {}).get(column, NOT_RUN)
        out[str(label)] = round(cell["value"], 2) if isinstance(cell, dict) else (
            round(cell, 2) if isinstance(cell, (int, float)) else cell)
    return out


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m reports.aggregate", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the measured JSON to write")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--runs", default="runs", help="the runs folder")
    parser.add_argument("--headline", default=None, help="JSON of the mapping's headline cells (a DVC metric)")
    args = parser.parse_args(argv)
    path = Path(args.params)
    if not path.is_file():
        raise ConfigError(f"--params {path}: file not found")
    params = load_report_params(path)
    measured = aggregate(params, args.runs)
    top = headline(measured, (params.get("report") or {}).get("headline")) if args.headline else None
    write_json(measured, args.out)
    if args.headline:
        write_json(top, args.headline)
    n = sum(len(c) for t in measured["tables"].values() for c in t["cells"].values())
    print(f"{args.out}: {len(measured['tables'])} tables, {n} mapped cells")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
