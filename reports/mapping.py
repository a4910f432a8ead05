"""The report mappings (`reports/mapping/<profile>.yaml`, named by a profile's `report_mapping`):
which run and which metric fill each cell of each paper table and each mapped figure. This module
is their one reader: the tables (reports/aggregate.py), the figures (reports/figures.py) and the
GPU check's cost projection (bench/gpu.py) walk a mapping through the functions here, so a change
of its format changes all three or none.

A table maps `rows` ({row label: run key}) against `columns` ({column label: source}), plus
single `cells` ([row, column, run key, source]). A run key may end in `@*` (the run at every
precision set it was trained at) and a row label may hold `{precision}`; the readers resolve those
against the runs. A source is `suite[/variant]:key[*scale]` or a mapping
`{suite, variant, key, scale, std, n}`. A line figure has `panels`, each with `lines`
({line: {x label: run key | [run key, source]}}) and a default `source`.

A mapping is composed the way the profiles are: it `extends` a file beside it (base.yaml holds
the papers' column sets, stand_ins.yaml the CPU profiles' stand-in runs) and lays its own keys
over it. A table's `columns` may name one of `column_sets` instead of listing them; the reader
puts the set in its place, and shows the tables in the papers' order (paper_numbers.yaml), so
which file of the chain names a table does not move it.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from common.config import extends_chain, merge, read_params_file
from common.errors import ConfigError

_SOURCE = re.compile(r"^(?P<suite>[\w.-]+)(?:/(?P<variant>[\w.-]+))?:(?P<key>[\w.-]+)(?:\*(?P<scale>[\d.eE+-]+))?$")
TABLE_FIELDS = ("context", "rows", "columns", "cells")
SECTIONS = ("context", "contexts", "headline", "column_sets", "tables", "figures")


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


def read_mapping(path: str | Path) -> dict:
    """The `report` section of a mapping file, composed over the files it extends: every table's
    named column set in its place, the tables in the papers' order, `column_sets` gone."""
    report = _composed(path)
    unknown = set(report) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"report_mapping {path}: unknown section(s) {sorted(unknown)} (known: {', '.join(SECTIONS)})")
    sets = report.get("column_sets") or {}
    tables = {table_id: _with_columns(table_id, spec, sets) for table_id, spec in (report.get("tables") or {}).items()}
    return {key: _in_paper_order(tables) if key == "tables" else report[key]
            for key in SECTIONS if key in report and key != "column_sets"}


def _composed(path: str | Path) -> dict:
    """The `report` sections of the chain laid over each other (common.config.merge), except that
    a column set a file restates replaces the base's whole: a set lists a table's columns in order,
    so merging one key by key would keep columns the file left out."""
    report, sets = {}, {}
    for layer in extends_chain(path, "report_mapping"):
        section = layer.get("report")
        if not isinstance(section, dict):
            raise ConfigError(f"report_mapping {path}: expected a 'report' section in every file it extends")
        section = dict(section)
        own = section.pop("column_sets", None) or {}
        if not isinstance(own, dict) or not all(isinstance(v, dict) for v in own.values()):
            raise ConfigError(f"report_mapping {path}: column_sets: expected {{name: {{column: source}}}}")
        sets.update(own)
        report = merge(report, section)
    return {**report, "column_sets": sets}


def _with_columns(table_id: str, spec: Any, sets: Mapping) -> Any:
    """A table whose `columns` names a column set, with the set in its place."""
    name = spec.get("columns") if isinstance(spec, dict) else None
    if not isinstance(name, str):
        return spec
    if name not in sets:
        raise ConfigError(f"report.tables.{table_id}.columns: no column set {name!r} "
                          f"(known: {', '.join(sets) or 'none'})")
    return {**spec, "columns": dict(sets[name])}


def _in_paper_order(tables: dict) -> dict:
    """The tables in paper_numbers.yaml's order; ids it does not know follow (the aggregate
    refuses them with their name)."""
    from reports.tables import load_paper_tables

    order = {t.id: i for i, t in enumerate(load_paper_tables())}
    return dict(sorted(tables.items(), key=lambda item: order.get(item[0], len(order))))


def load_report_params(path: str | Path = "params.yaml") -> dict:
    """params.yaml with its ``report`` section read from the file ``report_mapping`` names."""
    params = read_params_file(path, "--params")
    mapping = params.get("report_mapping")
    if mapping is not None:
        params["report"] = read_mapping(mapping)
    return params


def table_rows(table_id: str, spec: Mapping) -> list[tuple[str, str]]:
    """(row label template, run key) of a table's `rows`, in the mapping's order (the table's
    fields checked first)."""
    unknown = set(spec) - set(TABLE_FIELDS)
    if unknown:
        raise ConfigError(f"report.tables.{table_id}: unknown field(s) {sorted(unknown)}")
    return [(str(template), str(entry)) for template, entry in (spec.get("rows") or {}).items()]


def table_columns(table_id: str, spec: Mapping) -> list[tuple[str, dict]]:
    """(column label, parsed source) of a table's `columns`."""
    where = f"report.tables.{table_id}"
    return [(column, parse_source(source, where)) for column, source in (spec.get("columns") or {}).items()]


def table_cells(table_id: str, spec: Mapping) -> list[tuple[str, str, str, dict]]:
    """(row, column, run key, parsed source) of a table's single `cells`."""
    where = f"report.tables.{table_id}"
    out = []
    for entry in spec.get("cells") or []:
        if not isinstance(entry, (list, tuple)) or len(entry) != 4:
            raise ConfigError(f"{where}.cells: expected [row, column, run, source] entries")
        row, column, run, source = entry
        out.append((row, column, str(run), parse_source(source, where)))
    return out


def table_runs(table_id: str, spec: Mapping) -> list[tuple[str, dict]]:
    """Every (run key, parsed source) a table reads: each row against each column, then the cells."""
    columns = table_columns(table_id, spec)
    pairs = [(run, source) for _, run in table_rows(table_id, spec) for _, source in columns]
    return pairs + [(run, source) for _, _, run, source in table_cells(table_id, spec)]


def panel_points(spec: Any, where: str) -> dict[str, dict[str, tuple[str, dict]]]:
    """{line: {x label: (run key, parsed source)}} of one panel of a mapped line figure."""
    if not isinstance(spec, dict) or not isinstance(spec.get("lines"), dict) or set(spec) - {"ylabel", "source", "lines"}:
        raise ConfigError(f"{where}: expected {{ylabel, source, lines: {{line: {{x: run key | [run key, source]}}}}}}")
    lines = {}
    for label, points in spec["lines"].items():
        if not isinstance(points, dict):
            raise ConfigError(f"{where}.lines.{label}: expected {{x label: run key | [run key, source]}}")
        lines[str(label)] = {}
        for x, point in points.items():
            run, source = (point if isinstance(point, list) and len(point) == 2 else (point, spec.get("source")))
            if not isinstance(run, str) or source is None:
                raise ConfigError(f"{where}.lines.{label}.{x}: expected a run key (with the panel's source) "
                                  f"or [run key, source]")
            lines[str(label)][str(x)] = (run, parse_source(source, f"{where}.lines.{label}.{x}"))
    return lines


def figure_runs(name: str, spec: Mapping) -> list[tuple[str, dict]]:
    """Every (run key, parsed source) a mapped line figure reads, over its panels."""
    return [point for i, panel in enumerate(spec.get("panels") or [])
            for points in panel_points(panel, f"report.figures.{name}.panels[{i}]").values()
            for point in points.values()]
