"""`make plan` (common/plan.py): what `dvc repro` / `dvc exp run -S` would run, on a tiny DVC project.

The project's own pipeline is planned on a fresh clone in the end-to-end test; here a three-stage
project makes every rule checkable in seconds: missing outputs, a parameter override, the stages
after one that runs, an always-run check that does not make its successors run, stage targets.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.plan import main

DVC_YAML = """\
stages:
  check:
    cmd: python -c "open('checked', 'w').write('ok')"
    always_changed: true
    outs: [checked: {cache: false}]
  make_a:
    cmd: python -c "open('a.txt', 'w').write('a')"
    deps: [checked]
    params: [eval.suites.a.args.lr]
    outs: [a.txt: {cache: false}]
  after_a:
    cmd: python -c "open('b.txt', 'w').write(open('a.txt').read())"
    deps: [a.txt]
    outs: [b.txt: {cache: false}]
  other:
    cmd: python -c "open('c.txt', 'w').write('c')"
    params: [eval.figures.b.args.n]
    outs: [c.txt: {cache: false}]
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=tmp_path, check=True, env=env)
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "params.yaml").write_text("eval: {suites: {a: {args: {lr: 1}}}, figures: {b: {args: {n: 2}}}}\n"
                                          "seed: 0\nprecision: 6-16\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path, env


def planned(capsys, *argv) -> dict[str, str]:
    capsys.readouterr()
    assert main(list(argv)) == 0
    lines = capsys.readouterr().out.splitlines()
    return {line.split()[0]: line.split(None, 1)[1] for line in lines}


def test_fresh_project_plans_every_stage_then_nothing_after_repro(project, capsys):
    root, env = project
    plan = planned(capsys)
    assert list(plan) == ["check", "make_a", "after_a", "other"]  # dependency order
    assert "changed outs" in plan["make_a"] and "a.txt" in plan["make_a"]
    subprocess.run(["dvc", "repro", "-q"], cwd=root, check=True, env=env)
    assert planned(capsys) == {"check": "always changed"}  # and it does not drag make_a along


def test_override_plans_the_stages_that_track_it_and_those_after(project, capsys):
    root, env = project
    subprocess.run(["dvc", "repro", "-q"], cwd=root, check=True, env=env)
    before = (root / "params.yaml").read_text()
    plan = planned(capsys, "-S", "eval.suites.a.args.lr=5")
    assert plan == {"check": "always changed", "make_a": "parameter eval.suites.a.args.lr", "after_a": "after make_a"}
    assert set(planned(capsys, "-S", "eval.figures.b.args.n=3")) == {"check", "other"}
    assert set(planned(capsys, "-S", "eval.figures={b: {args: {n: 3}}}")) == {"check", "other"}  # a parent section
    assert set(planned(capsys, "-S", "eval.suites.a.args.lr=1")) == {"check"}  # the value it already has
    assert planned(capsys, "-S", "eval.suites.a.args.lr=5", "other") == {}  # `other` does not read it
    assert (root / "params.yaml").read_text() == before  # planning never writes params.yaml


def test_targets_limit_the_plan_to_them_and_their_dependencies(project, capsys):
    assert list(planned(capsys, "after_a")) == ["check", "make_a", "after_a"]
    assert main(["no_such_stage"]) == 2
    assert "stage 'no_such_stage': not in dvc.yaml" in capsys.readouterr().err
