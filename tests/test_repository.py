"""The repository stands on its own: its code and docs send no reader to a design or protocol file
outside it (the protocol facts the code relies on are in docs/protocols.md), and code and config
carry no words about how the work was organised (issue numbers)."""
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
