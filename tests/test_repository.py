"""The repository stands on its own: its code and docs send no reader to a design or protocol file
outside it (the protocol facts the code relies on are in docs/protocols.md), and code and config
carry no words about how the work was organised (issue numbers)."""
import ast
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE_FILES = re.compile(r"\b(DESIGN|PROTOCOLS)\.md\b")
ISSUE_NUMBER = re.compile(r"\bissues?\s*#?\d+|\(#\d+\)|\bsee #\d+", re.IGNORECASE)
TEXT = (".py", ".md", ".yaml", ".yml", ".toml", ".cfg", ".txt")
CODE_AND_CONFIG = (".py", ".yaml", ".yml", ".toml", ".cfg")


def tracked_files(suffixes):
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    return [ROOT / n for n in names if n.endswith(suffixes) and (ROOT / n).is_file()]


def python_sources() -> dict[str, str]:
    """The text of every tracked Python file, by its path in the repository."""
    return {p.relative_to(ROOT).as_posix(): p.read_text(errors="replace") for p in tracked_files((".py",))}


def matches(pattern, suffixes):
    """Every line of the tracked files but this one (which spells the patterns) that matches."""
    found = []
    for path in tracked_files(suffixes):
        rel = path.relative_to(ROOT).as_posix()
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if pattern.search(line):
                found.append(f"{rel}:{number}: {line.strip()}")
    return found


def test_no_file_sends_the_reader_to_a_design_or_protocol_file_outside_the_repository():
    assert matches(OUTSIDE_FILES, TEXT) == []


def test_code_and_config_carry_no_issue_numbers():
    assert matches(ISSUE_NUMBER, CODE_AND_CONFIG) == []


def test_the_patterns_find_what_they_look_for():
    assert OUTSIDE_FILES.search("see DESIGN.md for the layout")
    assert OUTSIDE_FILES.search("(../shared/PROTOCOLS.md)")
    assert ISSUE_NUMBER.search("# fixed for issue 14")
    assert ISSUE_NUMBER.search("see #13")
    assert ISSUE_NUMBER.search("landed earlier (#13)")
    assert not ISSUE_NUMBER.search(r"R&D \#2 and Net#2")


MAPPING_READER = "reports/mapping.py"
YAML_READ = re.compile(r"\byaml\.(safe_)?load\b|\bread_yaml_mapping\(")
MENTIONS_MAPPINGS = re.compile(r"reports/mapping|report_mapping|MAPPINGS\b")


def second_mapping_readers(files: dict[str, str]) -> list[str]:
    """Of {path: text}, the code outside tests/ and the mappings' own module that both names the
    report mappings and reads YAML itself: a second reader, whose parse could drift from the
    tables'."""
    return [rel for rel, text in files.items()
            if rel != MAPPING_READER and not rel.startswith("tests/")
            and MENTIONS_MAPPINGS.search(text) and YAML_READ.search(text)]


def test_the_report_mappings_have_one_reader():
    files = python_sources()
    assert MAPPING_READER in files and second_mapping_readers(files) == []


def test_a_second_mapping_reader_is_found():
    reader = 'import yaml\nMAPPINGS = {}\nyaml.safe_load(open("reports/mapping/paper.yaml"))\n'
    assert second_mapping_readers({"bench/x.py": reader, "tests/x.py": reader, MAPPING_READER: reader}) == ["bench/x.py"]


MAX_MODULE_LINES = 650  # a module past this holds several concerns: split it into a package


def long_modules(files: dict[str, str]) -> list[str]:
    """`path: N lines` of every Python module outside tests/ longer than MAX_MODULE_LINES."""
    return [f"{rel}: {text.count(chr(10))} lines" for rel, text in sorted(files.items())
            if not rel.startswith("tests/") and text.count("\n") > MAX_MODULE_LINES]


def test_no_module_outside_the_tests_is_over_650_lines():
    files = python_sources()
    assert long_modules(files) == []


def test_a_long_module_is_found():
    long, short = "x = 1\n" * (MAX_MODULE_LINES + 1), "x = 1\n" * MAX_MODULE_LINES
    assert long_modules({"common/a.py": long, "common/b.py": short, "tests/c.py": long}) == ["common/a.py: 651 lines"]


def unwrapped_mains(files: dict[str, str]) -> list[str]:
    """Command-line modules (outside tests/ and bench/) whose `main` skips `cli_main`, the one
    path from bad input to one error line and exit 2."""
    found = []
    for rel, text in sorted(files.items()):
        if rel.startswith(("tests/", "bench/")):
            continue
        for node in ast.parse(text).body:
            if isinstance(node, ast.FunctionDef) and node.name == "main" and \
                    "cli_main" not in {ast.unparse(d) for d in node.decorator_list}:
                found.append(rel)
    return found


def test_every_command_line_main_goes_through_cli_main():
    files = python_sources()
    assert unwrapped_mains(files) == []
    bare = "def main(argv=None):\n    return 0\n"
    assert unwrapped_mains({"eval/x.py": bare, "bench/x.py": bare, "eval/y.py": "@cli_main\n" + bare}) == ["eval/x.py"]
