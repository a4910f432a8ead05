"""The table model of the reports: the papers' tables (data) and the measured numbers beside them.

Two inputs meet here:

* ``reports/paper_numbers.yaml``: every numeric table of both papers (CQ Tables 1-9, BURN Tables
  1-9), read by :func:`load_paper_tables` into :class:`PaperTable` objects. Its header comment
  documents the fields.
* the *measured* structure (JSON, built by the aggregation step from the pipeline's metrics files),
  read by :func:`parse_measured` / :func:`load_measured`::

      {"context": {"profile": "smoke", "dataset": "synthetic", "network": "cifar_resnet20",
                   "notes": "..."},
       "tables": {"cq_table1": {
           "context": {"network": "cifar_resnet20 (width 0.25)"},
           "cells": {"ResNet-18 / SimCLR / -": {
               "Fine-tune Acc. (FP) / 10% labels": 41.2,
               "Fine-tune Acc. (FP) / 1% labels": {"value": 18.0, "std": 0.5, "n": 3, "half": 1.24},
               "Fine-tune Acc. (4-bit) / 10% labels": "diverged"}}}}}

  Row keys are the paper's row label parts joined with " / " (the first ``key_levels`` parts, see
  :attr:`PaperTable.row_keys`); column keys are the flattened paper column labels.

Choices made where the papers and protocols are silent:

* The top-level ``context`` is required and must name the ``profile``; a table's own ``context``
  overrides it field by field. ``dataset``/``network``/``notes`` may be left out (the caption then
  says "not recorded").
* A cell is a number, ``{"value": x, "std": s, "n": k, "half": h}`` (std, n, half optional; half:
  the 95 % t-interval half-width of a mean over k seeds), a status string
  (``"diverged"`` or ``"not run"``) or ``{"status": ...}``. A table or cell absent from the measured
  input is "not run". A non-finite number is refused (a diverged run must say ``"diverged"``).
* Unknown table ids, row keys, column keys or fields are refused with one line: they are typos, and
  a silently dropped number is worse than a stopped report.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from common.errors import ConfigError
from common.runs import DIVERGED, NOT_RUN

PAPER_NUMBERS = Path(__file__).resolve().parent / "paper_numbers.yaml"

STATUSES = (DIVERGED, NOT_RUN)  # a cell without a number says which

_TABLE_FIELDS = {"id", "paper", "number", "caption", "metric", "unit", "pretrain_dataset",
                 "eval_dataset", "networks", "row_header", "rows", "key_levels", "columns",
                 "values", "std"}
_CONTEXT_FIELDS = ("profile", "dataset", "network", "notes")


@dataclass(frozen=True)
class Cell:
    """One number (optionally mean ± std over n runs), or a status with no number."""

    value: float | None = None
    std: float | None = None
    n: int | None = None
    status: str | None = None
    half: float | None = None  # half-width of the 95 % t interval of the mean over n seeds

    @property
    def has_value(self) -> bool:
        return self.value is not None and self.status is None


NOT_RUN_CELL = Cell(status=NOT_RUN)


@dataclass(frozen=True)
class PaperTable:
    """One table of one paper, rows and columns in the paper's order."""

    id: str
    paper: str
    number: int
    caption: str
    metric: str
    unit: str
    pretrain_dataset: str
    eval_dataset: str
    networks: tuple[str, ...]
    row_header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    columns: tuple[str, ...]
    values: tuple[tuple[float | None, ...], ...]
    std: tuple[tuple[float | None, ...], ...] | None = None
    key_levels: int | None = None

    @property
    def row_keys(self) -> tuple[str, ...]:
        """The key of each row in the measured input: its first ``key_levels`` labels joined by " / "."""
        levels = self.key_levels or len(self.row_header)
        return tuple(" / ".join(row[:levels]) for row in self.rows)

    def paper_cell(self, r: int, c: int) -> Cell:
        std = self.std[r][c] if self.std is not None else None
        return Cell(value=self.values[r][c], std=std)


@dataclass(frozen=True)
class Context:
    """What a measured table was actually run on: goes into its caption."""

    profile: str
    dataset: str | None = None
    network: str | None = None
    notes: str | None = None


@dataclass(frozen=True)
class MeasuredTable:
    context: Context
    cells: Mapping[tuple[str, str], Cell] = field(default_factory=dict)

    def cell(self, row_key: str, column: str) -> Cell:
        return self.cells.get((row_key, column), NOT_RUN_CELL)


@dataclass(frozen=True)
class Measured:
    context: Context
    tables: Mapping[str, MeasuredTable] = field(default_factory=dict)

    def table(self, table_id: str) -> MeasuredTable:
        """The measured table, or an empty one (every cell "not run") in the default context."""
        return self.tables.get(table_id, MeasuredTable(self.context))


# ------------------------------------------------------------------------ the paper's numbers

def _number(x: Any, where: str, allow_none: bool = True) -> float | None:
    if x is None and allow_none:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ConfigError(f"{where}: expected a finite number{' or null' if allow_none else ''}, got {x!r}")
    return float(x)


def _strings(x: Any, where: str) -> tuple[str, ...]:
    if not isinstance(x, list) or not x or not all(isinstance(s, str) and s for s in x):
        raise ConfigError(f"{where}: expected a non-empty list of strings")
    return tuple(x)


def _matrix(x: Any, n_rows: int, n_cols: int, where: str) -> tuple[tuple[float | None, ...], ...]:
    if not isinstance(x, list) or len(x) != n_rows:
        raise ConfigError(f"{where}: expected {n_rows} rows")
    out = []
    for r, row in enumerate(x):
        if not isinstance(row, list) or len(row) != n_cols:
            raise ConfigError(f"{where}: row {r + 1} should have {n_cols} numbers")
        out.append(tuple(_number(v, f"{where} row {r + 1}") for v in row))
    return tuple(out)


def paper_table_from_dict(d: Mapping[str, Any], source: str = "paper numbers") -> PaperTable:
    """Validate one table entry of paper_numbers.yaml."""
    if not isinstance(d, Mapping) or not isinstance(d.get("id"), str):
        raise ConfigError(f"{source}: every table needs a string 'id'")
    where = f"{source}: table {d['id']}"
    unknown = set(d) - _TABLE_FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}")
    for key in ("paper", "caption", "metric", "unit", "pretrain_dataset", "eval_dataset"):
        if not isinstance(d.get(key), str) or not d[key]:
            raise ConfigError(f"{where}: '{key}' should be a non-empty string")
    if isinstance(d.get("number"), bool) or not isinstance(d.get("number"), int):
        raise ConfigError(f"{where}: 'number' should be an integer")
    row_header = _strings(d.get("row_header"), f"{where} row_header")
    columns = _strings(d.get("columns"), f"{where} columns")
    if not isinstance(d.get("rows"), list) or not d["rows"]:
        raise ConfigError(f"{where}: 'rows' should be a non-empty list")
    rows = tuple(_strings(row, f"{where} rows") for row in d["rows"])
    if any(len(row) != len(row_header) for row in rows):
        raise ConfigError(f"{where}: every row needs {len(row_header)} label parts (one per row_header)")
    key_levels = d.get("key_levels")
    if key_levels is not None and (isinstance(key_levels, bool) or not isinstance(key_levels, int)
                                   or not 1 <= key_levels <= len(row_header)):
        raise ConfigError(f"{where}: 'key_levels' should be an integer in 1..{len(row_header)}")
    values = _matrix(d.get("values"), len(rows), len(columns), f"{where} values")
    std = _matrix(d["std"], len(rows), len(columns), f"{where} std") if d.get("std") is not None else None
    table = PaperTable(
        id=d["id"], paper=d["paper"], number=d["number"], caption=d["caption"], metric=d["metric"],
        unit=d["unit"], pretrain_dataset=d["pretrain_dataset"], eval_dataset=d["eval_dataset"],
        networks=_strings(d.get("networks"), f"{where} networks"), row_header=row_header, rows=rows,
        columns=columns, values=values, std=std, key_levels=key_levels)
    if len(set(table.row_keys)) != len(rows):
        raise ConfigError(f"{where}: row keys are not unique")
    if len(set(columns)) != len(columns):
        raise ConfigError(f"{where}: column labels are not unique")
    return table


def load_paper_tables(path: str | Path = PAPER_NUMBERS) -> list[PaperTable]:
    """The tables of paper_numbers.yaml, in file order (CQ 1-9, then BURN 1-9)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"paper numbers {path}: not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"paper numbers {path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("tables"), list):
        raise ConfigError(f"paper numbers {path}: expected a mapping with a 'tables' list")
    tables = [paper_table_from_dict(t, f"paper numbers {path}") for t in data["tables"]]
    ids = [t.id for t in tables]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"paper numbers {path}: duplicate table ids")
    return tables


# ------------------------------------------------------------------------ the measured numbers

def _context(x: Any, where: str, base: Context | None) -> Context:
    if not isinstance(x, Mapping):
        raise ConfigError(f"{where}: expected a mapping with {', '.join(_CONTEXT_FIELDS)}")
    unknown = set(x) - set(_CONTEXT_FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; expected {', '.join(_CONTEXT_FIELDS)}")
    merged = dict(vars(base)) if base is not None else {}
    for key, value in x.items():
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}.{key}: expected a string")
        merged[key] = value
    if not merged.get("profile"):
        raise ConfigError(f"{where}: 'profile' (smoke, mini or paper) is required")
    return Context(**merged)


def parse_cell(x: Any, where: str) -> Cell:
    """A measured cell: number | {"value", "std", "n"} | "diverged" | "not run" | {"status"}."""
    if isinstance(x, str):
        x = {"status": x}
    if not isinstance(x, Mapping):
        return Cell(value=_number(x, where, allow_none=False))
    if "status" in x:
        if set(x) != {"status"} or x["status"] not in STATUSES:
            raise ConfigError(f"{where}: a status cell is exactly one of {list(STATUSES)}")
        return Cell(status=x["status"])
    unknown = set(x) - {"value", "std", "n", "half"}
    if unknown or "value" not in x:
        raise ConfigError(f"{where}: expected a number, {{value, std, n, half}} or one of {list(STATUSES)}")
    std, half = _number(x.get("std"), f"{where}.std"), _number(x.get("half"), f"{where}.half")
    for name, v in (("std", std), ("half", half)):
        if v is not None and v < 0:
            raise ConfigError(f"{where}.{name}: expected a non-negative number, got {v}")
    n = x.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError(f"{where}.n: expected a positive integer, got {n!r}")
    return Cell(value=_number(x["value"], f"{where}.value", allow_none=False), std=std, n=n, half=half)


def parse_measured(data: Any, paper_tables: list[PaperTable], source: str = "measured") -> Measured:
    """Validate the measured structure against the paper tables (ids, row keys, column keys)."""
    if not isinstance(data, Mapping) or set(data) - {"context", "tables"}:
        raise ConfigError(f"{source}: expected a mapping with 'context' and 'tables' only")
    if "context" not in data:
        raise ConfigError(f"{source}: 'context' with the 'profile' is required")
    default = _context(data["context"], f"{source} context", None)
    raw_tables = data.get("tables") or {}
    if not isinstance(raw_tables, Mapping):
        raise ConfigError(f"{source}: 'tables' should map table ids to {{context, cells}}")
    by_id = {t.id: t for t in paper_tables}
    tables = {}
    for table_id in sorted(raw_tables):
        where = f"{source} table {table_id}"
        if table_id not in by_id:
            raise ConfigError(f"{where}: no such paper table (expected one of {sorted(by_id)})")
        raw = raw_tables[table_id]
        if not isinstance(raw, Mapping) or set(raw) - {"context", "cells"}:
            raise ConfigError(f"{where}: expected a mapping with 'context' and 'cells'")
        context = _context(raw.get("context") or {}, f"{where} context", default)
        tables[table_id] = MeasuredTable(context, _cells(raw.get("cells") or {}, by_id[table_id], where))
    return Measured(default, tables)


def _cells(raw: Any, table: PaperTable, where: str) -> dict[tuple[str, str], Cell]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: 'cells' should map row keys to {{column: cell}}")
    cells = {}
    for row_key, row in raw.items():
        if row_key not in table.row_keys:
            raise ConfigError(f"{where}: unknown row {row_key!r} (expected one of {list(table.row_keys)})")
        if not isinstance(row, Mapping):
            raise ConfigError(f"{where} row {row_key!r}: expected a mapping column -> cell")
        for column, cell in row.items():
            if column not in table.columns:
                raise ConfigError(f"{where} row {row_key!r}: unknown column {column!r} "
                                  f"(expected one of {list(table.columns)})")
            cells[(row_key, column)] = parse_cell(cell, f"{where} [{row_key!r}, {column!r}]")
    return cells


def load_measured(path: str | Path, paper_tables: list[PaperTable]) -> Measured:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"measured file {path}: not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"measured file {path}: not valid JSON ({err})") from None
    return parse_measured(data, paper_tables, f"measured file {path}")
