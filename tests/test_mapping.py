"""The report mappings composed from a shared base (reports/mapping.py, reports/mapping/*.yaml)."""
from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import ConfigError
from reports.mapping import read_mapping
from reports.tables import load_paper_tables

ROOT = Path(__file__).resolve().parent.parent
MAPPINGS = ROOT / "reports/mapping"
PROFILE_MAPPINGS = ("smoke", "mini", "paper", "paper_small_data")  # the files a profile's report_mapping names


@pytest.mark.parametrize("name", PROFILE_MAPPINGS)
def test_every_profile_mapping_composes_to_tables_with_columns(name):
    report = read_mapping(MAPPINGS / f"{name}.yaml")
    assert "column_sets" not in report and report["tables"]
    for table_id, spec in report["tables"].items():
        assert isinstance(spec.get("columns", {}), dict), table_id
        assert spec.get("rows") or spec.get("cells"), f"{table_id}: a table with nothing to fill"


def test_a_restated_column_set_replaces_the_bases_whole():
    # mini measures k up to 16: the paper's k = 32..96 of base.yaml must not come back
    mini = read_mapping(MAPPINGS / "mini.yaml")["tables"]["burn_table3"]["columns"]
    assert list(mini) == ["k = 1", "k = 2", "k = 4", "k = 8", "k = 16", "Full"]
    smoke = read_mapping(MAPPINGS / "smoke.yaml")["tables"]["burn_table3"]["columns"]
    assert list(smoke) == ["k = 1", "k = 2", "k = 4", "Full"]
    paper = read_mapping(MAPPINGS / "paper.yaml")["tables"]["burn_table3"]["columns"]
    assert list(paper)[-4:] == ["k = 32", "k = 64", "k = 96", "Full"]


def test_a_childs_table_note_keeps_the_inherited_rows_and_the_papers_order():
    smoke = read_mapping(MAPPINGS / "smoke.yaml")["tables"]
    assert "synthetic_det" in smoke["cq_table3"]["context"]["notes"]
    assert smoke["cq_table3"]["rows"] == {"ResNet-18 / Vanilla SimCLR": "cq/simclr-baseline-cifar_resnet20"}
    order = [t.id for t in load_paper_tables()]
    assert list(smoke) == [t for t in order if t in smoke]


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def test_tables_follow_the_papers_order_whatever_the_files_order(tmp_path):
    _write(tmp_path, "base", "report:\n  column_sets:\n    top1: {\"Top-1 (%)\": \"linear:top1*100\"}\n")
    path = _write(tmp_path, "m", "extends: base\nreport:\n  tables:\n"
                                 "    burn_table5: {rows: {\"①\": burn/a}, columns: top1}\n"
                                 "    cq_table2: {cells: [[ResNet-18, SimCLR, cq/b, \"linear:top1*100\"]]}\n")
    report = read_mapping(path)
    assert list(report["tables"]) == ["cq_table2", "burn_table5"]
    assert report["tables"]["burn_table5"]["columns"] == {"Top-1 (%)": "linear:top1*100"}


@pytest.mark.parametrize("text, message", [
    ("report:\n  tables:\n    cq_table1: {rows: {a: cq/x}, columns: nosuchset}\n", "no column set 'nosuchset'"),
    ("report:\n  tabels: {}\n", r"unknown section\(s\) \['tabels'\]"),
    ("report:\n  column_sets: {a: [1, 2]}\n", "column_sets: expected"),
    ("extends: nosuchbase\nreport: {}\n", "nosuchbase"),
])
def test_a_bad_mapping_is_one_error_naming_what_is_wrong(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        read_mapping(_write(tmp_path, "m", text))
