"""The renderer: exact Markdown/LaTeX for fixed inputs, captions, cell formats, bad input.

The exact-comparison fixtures live in tests/fixtures/reports/: ``measured.json`` (a mean ± std
cell, a diverged cell, a not-run cell, cells left out, a table left out), ``paper_extra.yaml`` (a
made-up table with a missing paper number, LaTeX special characters and a paper ± std) and the
expected outputs under ``expected/``. After a deliberate change of the layout, regenerate them with
``.venv/bin/python -m tests.test_reports_render`` and review the diff.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from common.errors import ConfigError
from reports import render
from reports.render import (caption_text, cell_text, fmt_delta, fmt_value, latex_escape, render_all,
                            render_latex, render_markdown)
from reports.tables import Cell, Context, MeasuredTable, load_paper_tables, parse_measured

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "reports"
EXPECTED = FIXTURES / "expected"
TABLE_IDS = ["cq_table2", "burn_table3", "burn_table6"]  # burn_table6 is absent from measured.json
SMOKE_WARNING = "Measured on profile smoke (synthetic data, tiny networks) — not comparable to the paper's numbers."


def fixture_tables():
    real = {t.id: t for t in load_paper_tables()}
    return [real[i] for i in TABLE_IDS] + load_paper_tables(FIXTURES / "paper_extra.yaml")


def fixture_measured(tables):
    return parse_measured(json.loads((FIXTURES / "measured.json").read_text()), tables)


def render_fixtures(out_dir: Path) -> dict[Path, str]:
    """Render the fixture tables into out_dir (with one figure) and return {relative path: text}."""
    figure = out_dir / "figures" / "tsne_cq.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    figure.write_bytes(b"not really a png")
    tables = fixture_tables()
    files = render_all(tables, fixture_measured(tables), [figure], out_dir)
    return {path.relative_to(out_dir): text for path, text in files.items()}


def test_renders_the_expected_markdown_and_latex_exactly(tmp_path):
    files = render_fixtures(tmp_path)
    expected = sorted(p.relative_to(EXPECTED) for p in EXPECTED.rglob("*") if p.is_file())
    assert sorted(files) == expected
    for rel, text in files.items():
        assert text == (EXPECTED / rel).read_text(encoding="utf-8"), f"{rel} differs from the expected file"


def test_expected_fixture_covers_every_cell_kind():
    md = (EXPECTED / "tables" / "cq_table2.md").read_text(encoding="utf-8")
    assert "| ResNet-18 | 31.23 ± 0.50 (n=3) vs 29.31 (Δ +1.92) | 29.31 vs 31.90 (Δ -2.59) | diverged vs 44.91 (Δ —) |" in md
    assert "| ResNet-34 | not run vs 34.96 (Δ —) | 36.14 vs 36.14 (Δ +0.00) | not run vs 47.88 (Δ —) |" in md
    extra = (EXPECTED / "tables" / "test_table1.md").read_text(encoding="utf-8")
    assert "| Net_1 | SimCLR | 10.00 vs 10.00 ± 0.50 (Δ +0.00) | 12.00 vs — (Δ —) |" in extra
    tex = (EXPECTED / "tables" / "test_table1.tex").read_text(encoding="utf-8")
    assert r"Net\#2 & SimCLR & not run vs 40.00 ($\Delta$ ---) & 49.00 $\pm$ 0.25 (n=2) vs 50.00 $\pm$ 1.25 ($\Delta$ -1.00) \\" in tex
    for name in ("cq_table2", "burn_table3", "burn_table6", "test_table1"):
        tex = (EXPECTED / "tables" / f"{name}.tex").read_text(encoding="utf-8")
        assert tex.count(r"\begin{tabular}") == 1
        assert [tex.count(k) for k in (r"\toprule", r"\bottomrule")] == [1, 1]


def test_smoke_caption_carries_the_not_comparable_warning(tmp_path):
    tables = fixture_tables()
    measured = fixture_measured(tables)
    for t in tables:
        md = render_markdown(t, measured.table(t.id))
        assert md.splitlines()[2].startswith(f"**{SMOKE_WARNING}**")
        tex = render_latex(t, measured.table(t.id))
        assert rf"\caption{{{latex_escape(SMOKE_WARNING)}" in tex
    cq2 = caption_text(tables[0], measured.table("cq_table2"))
    assert "dataset synthetic (256 images, 32x32), network cifar_resnet20 (width 0.25) in place of ResNet-18/34." in cq2
    assert "Notes: 8 steps." in cq2


def test_other_profiles_captions():
    table = fixture_tables()[0]
    paper = caption_text(table, MeasuredTable(Context("paper", "ImageNet", "ResNet-18")))
    assert paper.startswith("Measured on profile paper (the paper's settings). Not run in profile paper.")
    assert "not comparable" not in paper
    mini = caption_text(table, MeasuredTable(Context("mini", "CIFAR-100 subset", "cifar_resnet20")))
    assert mini.startswith("Measured on profile mini (") and "not comparable to the paper's numbers" in mini
    other = caption_text(table, MeasuredTable(Context("custom")))
    assert other.startswith("Measured on profile custom (not the paper's settings) — not comparable")
    assert "dataset not recorded, network not recorded" in other


def test_a_table_missing_from_measured_is_all_not_run():
    tables = fixture_tables()
    measured = fixture_measured(tables)
    table = tables[2]  # burn_table6
    assert "burn_table6" not in measured.tables
    md = render_markdown(table, measured.table(table.id))
    body = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith(("| L_FS", "| :--"))]
    assert len(body) == len(table.rows) == 3
    for line, value in zip(body, (51.46, 50.28, 62.29)):
        assert line.endswith(f"| not run vs {value:.2f} (Δ —) |")
    assert "Not run in profile smoke." in caption_text(table, measured.table(table.id))


def test_cell_formats_and_delta():
    assert fmt_value(Cell(12.346)) == "12.35"
    assert fmt_value(Cell(1.0, std=0.1251, n=4)) == "1.00 ± 0.13 (n=4)"
    assert fmt_value(Cell(1.5, n=1)) == "1.50"
    assert fmt_value(Cell(None)) == "—"
    assert fmt_value(Cell(status="diverged")) == "diverged"
    assert fmt_delta(Cell(50.0), Cell(42.44)) == "+7.56"
    assert fmt_delta(Cell(42.0), Cell(42.004)) == "+0.00"  # never "-0.00"
    assert fmt_delta(Cell(40.0), Cell(42.5)) == "-2.50"
    assert fmt_delta(Cell(status="diverged"), Cell(1.0)) == "—"
    assert fmt_delta(Cell(1.0), Cell(None)) == "—"
    assert cell_text(Cell(3.0, std=0.5, n=2), Cell(1.0, std=0.25)) == "3.00 ± 0.50 (n=2) vs 1.00 ± 0.25 (Δ +2.00)"


def test_latex_escape():
    assert latex_escape("10% a_b R&D #2 ±1 Δ — λ(t) ✓ ✗ ① $x$ {y} ~^\\ <>") == (
        r"10\% a\_b R\&D \#2 $\pm$1 $\Delta$ --- $\lambda$(t) \checkmark{} $\times$ \textcircled{1} "
        r"\$x\$ \{y\} \textasciitilde{}\textasciicircum{}\textbackslash{} \textless{}\textgreater{}")


@pytest.mark.parametrize("data, message", [
    ({"tables": {}}, "'context' with the 'profile' is required"),
    ({"context": {"dataset": "x"}}, "'profile' (smoke, mini or paper) is required"),
    ({"context": {"profile": "smoke", "gpu": "x"}}, "unknown field(s) ['gpu']"),
    ({"context": {"profile": "smoke"}, "tables": {"cq_table99": {}}}, "cq_table99: no such paper table"),
    ({"context": {"profile": "smoke"}, "tables": {"cq_table2": {"cells": {"ResNet-50": {}}}}},
     "unknown row 'ResNet-50'"),
    ({"context": {"profile": "smoke"}, "tables": {"cq_table2": {"cells": {"ResNet-18": {"BYOL": 1.0}}}}},
     "unknown column 'BYOL'"),
    ({"context": {"profile": "smoke"}, "tables": {"cq_table2": {"cells": {"ResNet-18": {"CQ-A": math.nan}}}}},
     "expected a finite number"),
    ({"context": {"profile": "smoke"}, "tables": {"cq_table2": {"cells": {"ResNet-18": {"CQ-A": "exploded"}}}}},
     "a status cell is exactly one of ['diverged', 'not run']"),
    ({"context": {"profile": "smoke"}, "tables": {"cq_table2": {"cells": {"ResNet-18": {"CQ-A": {"value": 1, "n": 0}}}}}},
     "expected a positive integer"),
    ({"context": {"profile": "smoke"}, "tables": {"cq_table2": {"cells": {"ResNet-18": {"CQ-A": {"value": 1, "std": -1}}}}}},
     "expected a non-negative number"),
])
def test_bad_measured_input_is_one_clear_error(data, message):
    with pytest.raises(ConfigError) as err:
        parse_measured(data, load_paper_tables())
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_cli_writes_every_table_and_the_index(tmp_path, capsys):
    measured = tmp_path / "measured.json"
    measured.write_text(json.dumps({"context": {"profile": "smoke"},
                                    "tables": {"burn_table7": {"cells": {"Eq. 3": {"Top-1 (%)": 61.0}}}}}))
    assert render.main(["--measured", str(measured), "--out", str(tmp_path / "out")]) == 0
    tables = sorted(p.name for p in (tmp_path / "out" / "tables").iterdir())
    assert len(tables) == 36 and "burn_table7.tex" in tables and "cq_table9.md" in tables
    assert "| Eq. 3 | 61.00 vs 62.29 (Δ -1.29) |" in (tmp_path / "out" / "tables" / "burn_table7.md").read_text()
    index = (tmp_path / "out" / "README.md").read_text()
    assert index.count("](tables/") == 36 and "(none)" in index
    assert not [p for p in (tmp_path / "out").rglob("*.tmp")]


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "measured.json"
    bad.write_text("{not json")
    assert render.main(["--measured", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: measured file {bad}: not valid JSON") and err.count("\n") == 1
    assert render.main(["--measured", str(tmp_path / "nope.json"), "--out", str(tmp_path / "out")]) == 2
    assert "not found" in capsys.readouterr().err
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"context": {"profile": "smoke"}}))
    assert render.main(["--measured", str(good), "--out", str(tmp_path / "out"),
                        "--figures", str(tmp_path / "missing.png")]) == 2
    assert "figure" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing half-written


if __name__ == "__main__":  # regenerate the expected files after a deliberate layout change
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        files = render_fixtures(Path(tmp))
    shutil.rmtree(EXPECTED, ignore_errors=True)
    for rel, text in files.items():
        (EXPECTED / rel).parent.mkdir(parents=True, exist_ok=True)
        (EXPECTED / rel).write_bytes(text.encode("utf-8"))
    print(f"wrote {len(files)} expected files under {EXPECTED}")


def test_a_mean_over_seeds_shows_its_interval_not_its_std():
    from reports.render import fmt_value
    from reports.tables import Cell

    assert fmt_value(Cell(value=45.123, std=1.0, n=3, half=2.484)) == "45.12 ± 2.48 (n=3)"
    assert fmt_value(Cell(value=45.123, std=1.0, n=3)) == "45.12 ± 1.00 (n=3)"  # trials of one seed: the std
