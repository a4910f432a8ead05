"""End to end: a fresh clone, `dvc repro` on the smoke profile, every paper table rendered.

Checks that every table of both papers exists as Markdown and LaTeX, parses, has the paper's rows
and columns, and holds a number (or "diverged") in every cell the smoke profile's mapping
(`report_mapping` in params.yaml) says it computes.
"""
import csv
import io
import json
import os
import re
import sys
from pathlib import Path

import pytest

from reports.mapping import load_report_params
from reports.render import _md_escape, latex_escape
from reports.tables import load_paper_tables
from tests.engine_fixtures import clone_repo, run_timed

MEASURED = re.compile(r"^(-?\d+\.\d\d( ± \d+\.\d\d)?( \(n=\d+\))?|diverged) vs ")
LATEX_MEASURED = re.compile(r"^(-?\d+\.\d\d( \$\\pm\$ \d+\.\d\d)?( \(n=\d+\))?|diverged) vs ")


def mapped_cells(params: dict) -> dict[str, set[tuple[str, str]]]:
    out: dict[str, set[tuple[str, str]]] = {}
    for table_id, spec in params["report"]["tables"].items():
        cells = {(r, c) for r in spec.get("rows") or {} for c in spec.get("columns") or {}}
        cells |= {(e[0], e[1]) for e in spec.get("cells") or []}
        out[table_id] = cells
    return out


def markdown_rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in lines]


def latex_rows(text: str) -> list[list[str]]:
    assert text.count(r"\begin{tabular}") == 1 and r"\end{tabular}" in text
    body = text.split(r"\toprule", 1)[1].split(r"\bottomrule", 1)[0]
    lines = [line.strip() for line in body.splitlines() if line.strip().endswith(r"\\")]
    return [[c.strip() for c in line[:-2].split(" & ")] for line in lines]


def check_reports(repo: Path) -> int:
    """Assert the rendered tables of `repo`; returns the number of measured cells checked."""
    cwd = os.getcwd()
    os.chdir(repo)  # the mapping file is named relative to the repository
    try:
        params = load_report_params(repo / "params.yaml")
    finally:
        os.chdir(cwd)
    mapped, checked = mapped_cells(params), 0
    for table in load_paper_tables():
        levels = table.key_levels or len(table.row_header)
        header = [*table.row_header, *table.columns]
        for suffix, rows_of, esc, number in ((".md", markdown_rows, _md_escape, MEASURED),
                                             (".tex", latex_rows, latex_escape, LATEX_MEASURED)):
            path = repo / "reports" / "tables" / f"{table.id}{suffix}"
            rows = rows_of(path.read_text())
            if suffix == ".md":
                rows = [rows[0], *rows[2:]]  # drop the alignment row
            assert rows[0] == [esc(h) for h in header], path
            assert [r[:len(table.row_header)] for r in rows[1:]] == [[esc(p) for p in row] for row in table.rows], path
            for row, cells in zip(table.rows, rows[1:]):
                key = " / ".join(row[:levels])
                for column, cell in zip(table.columns, cells[len(table.row_header):]):
                    if (key, column) in mapped.get(table.id, ()):
                        assert number.match(cell), f"{path}: {key} / {column}: {cell!r}"
                        checked += 1
    assert (repo / "reports" / "README.md").is_file()
    for fig in ("burn_fig3_5_grad_norms", "burn_fig4_ema_toy", "burn_fig8_lambda", "burn_svm_lowshot",
                "burn_fig6_infomin_views", "burn_fig7_negatives"):
        assert (repo / "reports" / "figures" / f"{fig}.png").stat().st_size > 1000
    for fig in ("burn_fig6_infomin_views", "burn_fig7_negatives"):  # every mapped point measured
        panels = json.loads((repo / "reports" / "figures" / f"{fig}.json").read_text())["panels"]
        cells = [c for lines in panels.values() for points in lines.values() for c in points.values()]
        assert cells and all(isinstance(c, (int, float, dict)) or c == "diverged" for c in cells), fig
    assert list((repo / "reports" / "figures").glob("cq_fig2_tsne_*.png"))
    return checked


def planned_stages(clone: Path, env: dict) -> list[str]:
    done = run_timed("make plan", [sys.executable, "-m", "common.plan"], cwd=clone, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return [line.split()[0] for line in done.stdout.splitlines()]


def exp_show_columns(clone: Path, env: dict) -> list[str]:
    done = run_timed("dvc exp show --csv", [str(Path(sys.executable).parent / "dvc"), "exp", "show", "--csv"],
                     cwd=clone, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return next(csv.reader(io.StringIO(done.stdout)))


@pytest.mark.e2e
def expected_verdict_kinds(clone: Path, verdicts: list[dict]) -> dict[str, str]:
    """Each claim's verdict where it is a judgement (one of the four) and "not run" for a claim
    with an arm the profile does not train."""
    from common import runs
    from common.config import load_params
    from reports import claims as C

    params = load_params(clone / "params.yaml")
    trained = set(runs.pretraining_keys(params))

    def ran(arm: dict) -> bool:
        key = C.run_key(arm, params)
        base, _, precision = key.partition("@")
        return key in trained or (base in trained and precision in ("", str(params.get("precision"))))

    judged = {"holds", "reversed", "inconclusive", "not testable at this scale"}
    by_id = {c.id: c for c in C.load_claims()}
    return {r["id"]: (r["verdict"] if r["verdict"] in judged else "?") if ran(by_id[r["id"]].a) and ran(by_id[r["id"]].b)
            else C.NOT_RUN for r in verdicts}


def test_smoke_dvc_repro_renders_every_table(tmp_path):
    clone, env = clone_repo(tmp_path / "repo")
    plan = planned_stages(clone, env)  # a fresh clone: every stage, the params check first
    assert plan[0] == "check_profile" and plan[-1] == "report" and len(plan) > 40
    done = run_timed("smoke dvc repro (fresh clone)", [str(Path(sys.executable).parent / "dvc"), "repro"],
                     cwd=clone, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert check_reports(clone) > 150
    assert planned_stages(clone, env) == ["check_profile"]  # always run; nothing after it
    verdicts = json.loads((clone / "reports" / "claims" / "verdicts.json").read_text())
    assert len(verdicts) >= 20
    # every claim whose two arms the profile trains is judged, whatever the tiny runs can say; a
    # claim with an arm it does not train (smoke has no 8-16 CQ-Quant run) is "not run"
    assert {r["id"]: r["verdict"] for r in verdicts} == expected_verdict_kinds(clone, verdicts)
    table9 = markdown_rows((clone / "reports" / "tables" / "cq_table9.md").read_text())
    sets = {row[1]: row[2] for row in table9[2:] if row[0] == "ResNet-18"}  # one dvc repro, three sets
    assert all(MEASURED.match(sets[s]) for s in ("4-16", "6-16", "8-16")), sets
    compare = run_timed("make compare", ["make", "-s", "compare"], cwd=clone, env={**env, "COLUMNS": "120"})
    assert compare.returncode == 0, compare.stderr[-2000:]
    assert max(len(line) for line in compare.stdout.splitlines()) <= 120 and "…" not in compare.stdout, compare.stdout
    assert all(name in compare.stdout for name in ("precision", "cq2.CQ-C", "cq9.4-16", "cq9.8-16")), compare.stdout
    columns = exp_show_columns(clone, env)  # one headline number per evaluated run, not every key
    assert len(columns) < 600, len(columns)  # was 8,013: ~150 headline numbers, ~300 parameters
    for variant in ("baseline", "cq_a", "cq_c"):
        assert f"runs/eval/linear.json:cq.simclr-{variant}-cifar_resnet20.s0.top1" in columns
    assert not [c for c in columns if "provenance" in c or "/metrics.json:" in c]
