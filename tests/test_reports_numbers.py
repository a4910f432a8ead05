"""reports/paper_numbers.yaml against the papers' own text (../shared/papers/*.md).

A small parser reads the tables of the .md files: there they are tab-separated lines (OCR of the
PDFs), with the header in the first lines, bold as <b> tags, and sometimes two rows printed on one
line ("51.39 51.13"). Each block of tab-separated lines is given the number of the nearest
"Table N" caption line (a tie goes to the caption below, the papers' usual place); the test checks
that this finds exactly Tables 1-9 in each paper before comparing anything.

Numbers are compared exactly (value and ± std, cell by cell, in the paper's row and column order).
Labels are checked more leniently because the OCR damaged some of them: every word of every
transcribed row label, row header and column level must occur in the table's text.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from common.errors import ConfigError
from reports.tables import PAPER_NUMBERS, load_paper_tables, paper_table_from_dict

PAPERS = Path(__file__).resolve().parents[1].parent / "shared" / "papers"
PAPER_FILES = {"cq": "contrastive-quant.md", "burn": "burn.md"}

CAPTION = re.compile(r"^Table (\d+)[.:]")
NUM = r"\d+(?:\.\d+)?"
VALUE = re.compile(rf"({NUM})(?:\s*±\s*({NUM}))?")
VALUE_FIELD = re.compile(rf"^{NUM}(?:\s*±\s*{NUM})?(?:\s+{NUM}(?:\s*±\s*{NUM})?)*$")
TAG = re.compile(r"<[^>]+>")


def strip_tags(text: str) -> str:
    return TAG.sub("", text).strip()


def norm(text: str) -> str:
    """Lower-case text without markup or whitespace, for the lenient label check."""
    text = strip_tags(text).replace(r"\lambda", "λ").replace(r"\mathcal", "").replace(r"\downarrow", "")
    return re.sub(r"[\s${}\\]", "", text).lower()


def tab_blocks(lines: list[str]) -> list[tuple[int, int]]:
    """(first, last) line index of each run of consecutive tab-separated lines."""
    blocks, start = [], None
    for i, line in enumerate(lines + [""]):
        if "\t" in line and start is None:
            start = i
        elif "\t" not in line and start is not None:
            blocks.append((start, i - 1))
            start = None
    return blocks


def parse_rows(lines: list[str]) -> list[list[tuple[float, float | None]]]:
    """The numeric rows of a block: (value, std or None) per value cell; one line may hold 2 rows."""
    rows = []
    for line in lines:
        fields = [strip_tags(f) for f in line.split("\t")]
        numeric = [VALUE.findall(f) for f in fields if f and VALUE_FIELD.match(f)]
        if not numeric:
            continue  # a header line
        depth = len(numeric[0])
        assert all(len(f) == depth for f in numeric), f"ragged merged row: {line!r}"
        for i in range(depth):
            rows.append([(float(v), float(s) if s else None) for v, s in (f[i] for f in numeric)])
    return rows


def parse_paper(path: Path) -> dict[int, dict]:
    """Table number -> {"rows": numeric rows, "text": the block's text}."""
    lines = path.read_text(encoding="utf-8").splitlines()
    captions = [(i, int(m.group(1))) for i, line in enumerate(lines) if (m := CAPTION.match(line))]
    tables: dict[int, dict] = {}
    for first, last in tab_blocks(lines):
        # distance to each caption; ties go to the caption below the block
        def distance(cap):
            i, _ = cap
            return (first - i, 1) if i < first else (i - last, 0)
        number = min(captions, key=distance)[1]
        assert number not in tables, f"{path.name}: two blocks for Table {number}"
        block = lines[first:last + 1]
        tables[number] = {"rows": parse_rows(block), "text": "\n".join(block)}
    return tables


@pytest.fixture(scope="module")
def parsed() -> dict[str, dict[int, dict]]:
    return {prefix: parse_paper(PAPERS / name) for prefix, name in PAPER_FILES.items()}


@pytest.fixture(scope="module")
def transcribed():
    return load_paper_tables()


def test_parser_finds_nine_tables_per_paper(parsed):
    for prefix in PAPER_FILES:
        assert sorted(parsed[prefix]) == list(range(1, 10)), prefix
        assert all(t["rows"] for t in parsed[prefix].values())


def test_parser_reads_merged_rows_and_std():
    rows = parse_rows(["ResNet-18\tCQ-A\t6-16 8-16\t<b>51.39</b> 51.13\t28.87 <b>28.97</b>",
                       "S2-BNN\t27.00±1.54\t33.39 ± 2.72\t76.49"])
    assert rows == [[(51.39, None), (28.87, None)], [(51.13, None), (28.97, None)],
                    [(27.00, 1.54), (33.39, 2.72), (76.49, None)]]


def test_transcribed_tables_are_cq_then_burn_1_to_9(transcribed):
    assert [t.id for t in transcribed] == [f"cq_table{i}" for i in range(1, 10)] + [f"burn_table{i}" for i in range(1, 10)]
    for t in transcribed:
        assert t.id.endswith(f"table{t.number}")
        assert t.paper == ("Contrastive Quant" if t.id.startswith("cq") else "BURN")


@pytest.mark.parametrize("table_id", [f"{p}_table{i}" for p in PAPER_FILES for i in range(1, 10)])
def test_every_number_matches_the_paper(table_id, transcribed, parsed):
    table = next(t for t in transcribed if t.id == table_id)
    prefix = table_id.split("_")[0]
    paper_rows = parsed[prefix][table.number]["rows"]
    assert len(table.rows) == len(paper_rows), "row count"
    for r, paper_row in enumerate(paper_rows):
        assert len(table.columns) == len(paper_row), f"column count, row {r + 1}"
        for c, (value, std) in enumerate(paper_row):
            cell = table.paper_cell(r, c)
            where = f"{table_id} row {table.rows[r]} column {table.columns[c]!r}"
            assert cell.value == value, where
            assert cell.std == std, where + " (std)"


@pytest.mark.parametrize("table_id", [f"{p}_table{i}" for p in PAPER_FILES for i in range(1, 10)])
def test_every_label_word_occurs_in_the_paper_table(table_id, transcribed, parsed):
    table = next(t for t in transcribed if t.id == table_id)
    text = norm(parsed[table_id.split("_")[0]][table.number]["text"])
    labels = list(table.row_header) + [part for row in table.rows for part in row]
    labels += [level for col in table.columns for level in col.split(" / ")]
    missing = {word for label in labels for word in label.split() if norm(word) not in text}
    assert not missing, f"{table_id}: not in the paper's table: {sorted(missing)}"


def test_paper_numbers_loader_rejects_a_ragged_table():
    good = {"id": "x", "paper": "P", "number": 1, "caption": "c", "metric": "m", "unit": "%",
            "pretrain_dataset": "d", "eval_dataset": "d", "networks": ["n"], "row_header": ["Method"],
            "rows": [["a"], ["b"]], "columns": ["c1", "c2"], "values": [[1.0, 2.0], [3.0, None]]}
    assert paper_table_from_dict(good).paper_cell(1, 1).value is None
    with pytest.raises(ConfigError, match="row 2 should have 2 numbers"):
        paper_table_from_dict({**good, "values": [[1.0, 2.0], [3.0]]})
    with pytest.raises(ConfigError, match="row keys are not unique"):
        paper_table_from_dict({**good, "rows": [["a"], ["a"]]})
    with pytest.raises(ConfigError, match="finite number"):
        paper_table_from_dict({**good, "values": [[1.0, "2"], [3.0, 4.0]]})
    with pytest.raises(ConfigError, match="not found"):
        load_paper_tables(PAPER_NUMBERS.with_name("missing.yaml"))
