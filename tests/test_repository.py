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


def plain_argparse_parsers(files: dict[str, str]) -> list[str]:
    """Modules (outside tests/, bench/ and common/config.py) that build argparse's own parser,
    whose bad command line is a usage block and an exit, not common.config.ArgumentParser's one
    ConfigError line."""
    return sorted(rel for rel, text in files.items() if not rel.startswith(("tests/", "bench/"))
                  and rel != "common/config.py" and "argparse.ArgumentParser(" in text)


def test_every_command_line_parser_answers_in_one_line():
    assert plain_argparse_parsers(python_sources()) == []
    code = "import argparse\np = argparse.ArgumentParser(prog='x')\n"
    assert plain_argparse_parsers({"eval/x.py": code, "bench/x.py": code, "common/config.py": code}) == ["eval/x.py"]


RUN_CONTRACT = "common/runs.py"


def contract_words() -> dict[str, str]:
    """What the run contract owns, by its constant's name: the run folder's file names and the
    status words a metrics.json records."""
    from common import runs

    return {name: getattr(runs, name) for name in ("ENCODER", "METRICS", "CHECKPOINT", "OK", "DIVERGED", "NOT_RUN_DIVERGED",
                                                   "METHOD_PREFIX")}


def docstring_nodes(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {id(node.body[0].value) for node in ast.walk(tree) if isinstance(node, kinds) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}


def contract_words_spelled_outside(files: dict[str, str], words: dict[str, str]) -> list[str]:
    """`path:line: 'word' (runs.NAME)` for every string in code (docstrings aside) outside tests/ and
    the run contract that is one of its words, a path ending in one of its file names, or a
    checkpoint key of the method's components (`method.<name>.`, read through runs.method_state)."""
    by_value = {value: name for name, value in words.items()}
    found = []
    for rel, text in sorted(files.items()):
        if rel.startswith("tests/") or rel == RUN_CONTRACT:
            continue
        tree = ast.parse(text)
        docs = docstring_nodes(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                name = (by_value.get(node.value) or by_value.get(node.value.rpartition("/")[2] if "/" in node.value else None)
                        or ("METHOD_PREFIX" if node.value.startswith(words["METHOD_PREFIX"]) else None))
                if name:
                    found.append((rel, node.lineno, f"{rel}:{node.lineno}: {node.value!r} (runs.{name})"))
    return [line for _, _, line in sorted(found)]


def test_run_folder_file_names_and_status_words_are_spelled_only_by_the_run_contract():
    assert contract_words_spelled_outside(python_sources(), contract_words()) == []


def test_a_file_name_or_status_word_outside_the_run_contract_is_found():
    words = contract_words()
    code = ('"""Writes metrics.json with status "ok"."""\n'
            'a = out / "metrics.json"\nb = {"status": "diverged"}\nc = "runs/x/encoder.pt"\nd = "okay"\n'
            'e = f"method.{name}."\n')
    assert contract_words_spelled_outside({"eval/x.py": code, "tests/x.py": code, RUN_CONTRACT: code}, words) == [
        "eval/x.py:2: 'metrics.json' (runs.METRICS)", "eval/x.py:3: 'diverged' (runs.DIVERGED)",
        "eval/x.py:4: 'runs/x/encoder.pt' (runs.ENCODER)", "eval/x.py:6: 'method.' (runs.METHOD_PREFIX)"]


PACKAGES = ("common", "cq", "burn", "eval", "reports", "study", "bench")


def module_name(rel: str) -> str:
    parts = rel[:-3].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(rel: str, text: str, modules: set[str]) -> set[str]:
    """The project modules `rel` imports anywhere in it (function bodies and TYPE_CHECKING blocks
    too: a circle there is still two modules that each need the other)."""
    me, found = module_name(rel), set()
    package = me if rel.endswith("__init__.py") else me.rpartition(".")[0]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: up level - 1 packages from this module's own
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != me:
                found.add(name)
    return found


def import_circles(files: dict[str, str]) -> list[list[str]]:
    """Every circle of imports among the project's modules outside tests/ (each once, from its
    smallest module); a package's __init__ importing its own modules is no circle."""
    code = {rel: text for rel, text in files.items() if rel.split("/")[0] in PACKAGES}
    modules = {module_name(rel) for rel in code}
    graph = {module_name(rel): {m for m in imports_of(rel, text, modules)
                                if not module_name(rel).startswith(m + ".")}  # a module importing its package
             for rel, text in code.items()}
    circles, seen = [], set()

    def walk(path: list[str]):
        for nxt in sorted(graph.get(path[-1], ())):
            if nxt == path[0]:
                key = frozenset(path)
                if key not in seen and path[0] == min(path):
                    seen.add(key)
                    circles.append(path + [nxt])
            elif nxt not in path and nxt > path[0]:
                walk(path + [nxt])
    for start in sorted(graph):
        walk([start])
    return circles


def test_no_import_circle_among_the_projects_modules():
    assert import_circles(python_sources()) == []


def test_an_import_circle_is_found():
    files = {"eval/a.py": "from eval.b import x\n", "eval/b.py": "def f():\n    from eval import a\n",
             "eval/c.py": "import eval.a\n", "eval/__init__.py": "from eval.c import y\n"}
    assert import_circles(files) == [["eval.a", "eval.b", "eval.a"]]


def reporting_modules_that_drive_runs(files: dict[str, str]) -> list[str]:
    """Modules of reports/ that start processes or import the study's driver: the reporting layer
    reads what runs wrote; running them (worktrees, `dvc repro`) is the study package's."""
    found = []
    for rel, text in sorted(files.items()):
        if not rel.startswith("reports/"):
            continue
        modules: set[str] = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                modules |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules.add(node.module or "")
        if any(m == "subprocess" or m == "study" or m.startswith("study.") for m in modules):
            found.append(rel)
    return found


def test_the_reporting_layer_only_reads():
    assert reporting_modules_that_drive_runs(python_sources()) == []
    assert reporting_modules_that_drive_runs({"reports/a.py": "import subprocess\n", "reports/b.py": "from study import v2\n",
                                              "study/c.py": "import subprocess\n", "reports/d.py": "import json\n"}) == [
        "reports/a.py", "reports/b.py"]
