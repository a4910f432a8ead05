"""Bad input: one clear line on stderr naming what was wrong, exit code 2, nothing left behind.

Table-driven: each case is (CLI module, arguments, message fragment). Arguments may name `{tmp}`
(a fresh folder) and `{out}` (the output folder the call must not create). Parameter values are
validated in one place (`common.config`, `common.engine.TrainConfig`) for params.yaml and
command-line overrides alike, so a value that works with `dvc exp run -S` also works as
`key=value` on the command line (YAML 1.2 numbers: 1e-3 is a float).
"""
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "profiles" / "smoke.yaml")
CQ = ["cq.pretrain", "--params", SMOKE, "--method", "simclr", "--variant", "cq_a", "--backbone", "cifar_resnet20",
      "--out", "{out}"]
BURN = ["burn.pretrain", "--params", SMOKE, "--method", "byol", "--backbone", "reactnet_a", "--out", "{out}"]

FILES = {
    "invalid.yaml": "cq: {train: [unclosed\n",
    "list.yaml": "- 1\n- 2\n",
    "no_cq_train.yaml": "seed: 0\nprecision: 6-16\ncq: {dataset: {name: synthetic}}\n",
    "no_cq_views.yaml": "seed: 0\ncq: {dataset: {name: synthetic}, train: {steps: 1}}\n",
}

CASES = {
    # zero or negative steps
    "cq steps=0": (CQ + ["cq.train.steps=0"], "cq.train.steps: expected an integer >= 1"),
    "cq steps=-3": (CQ + ["cq.train.steps=-3"], "cq.train.steps: expected an integer >= 1"),
    "burn steps=0": (BURN + ["burn.train.steps=0"], "burn.train.steps: expected an integer >= 1"),
    # non-numeric values
    "cq steps=abc": (CQ + ["cq.train.steps=abc"], "cq.train.steps: expected an integer >= 1 (or give epochs), got 'abc'"),
    "seed=abc": (CQ + ["seed=abc"], "seed: expected an integer, got 'abc'"),
    "cq lr=abc": (CQ + ["cq.train.lr=abc"], "cq.train.lr: expected a number >= 0, got 'abc'"),
    "burn lr=abc": (BURN + ["burn.train.lr=abc"], "burn.train.lr: expected a number >= 0, got 'abc'"),
    "cq momentum=1.5": (CQ + ["cq.train.momentum=1.5"], "cq.train.momentum: expected a number in [0, 1)"),
    "cq nesterov=maybe": (CQ + ["cq.train.nesterov=maybe"], "cq.train.nesterov: expected true or false"),
    # parameter files that are not YAML mappings, or lack a section
    "pipeline invalid yaml": (["eval.pipeline", "--suite", "linear", "--params", "{tmp}/invalid.yaml", "--dry-run"],
                              "invalid.yaml: not valid YAML"),
    "pipeline yaml list": (["eval.pipeline", "--suite", "linear", "--params", "{tmp}/list.yaml", "--dry-run"],
                           "list.yaml: expected a mapping at the top level, got a list"),
    "aggregate invalid yaml": (["reports.aggregate", "--params", "{tmp}/invalid.yaml", "--out", "{out}/m.json"],
                               "invalid.yaml: not valid YAML"),
    "aggregate yaml list": (["reports.aggregate", "--params", "{tmp}/list.yaml", "--out", "{out}/m.json"],
                            "expected a mapping at the top level"),
    "cq invalid yaml": (["cq.pretrain", "--params", "{tmp}/invalid.yaml", *CQ[3:]], "invalid.yaml: not valid YAML"),
    "cq without cq.views": (["cq.pretrain", "--params", "{tmp}/no_cq_views.yaml", *CQ[3:]], "missing 'cq.views.simclr'"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_nothing_written(name, tmp_path, capsys):
    argv, fragment = CASES[name]
    for file, text in FILES.items():
        (tmp_path / file).write_text(text)
    out = tmp_path / "out"
    module, *args = [a.replace("{tmp}", str(tmp_path)).replace("{out}", str(out)) for a in argv]
    capsys.readouterr()
    rc = __import__(module, fromlist=["main"]).main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, f"{name}: exit {rc}"
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], f"{name}: {err}"
    assert not out.exists(), f"{name}: left {out}"


def test_scientific_notation_works_on_the_command_line_as_with_dvc_exp_run(tmp_path):
    from cq.pretrain import main
    out = tmp_path / "run"
    args = [a.replace("{out}", str(out)) for a in CQ[1:]]
    assert main([*args, "cq.train.steps=1", "cq.train.lr=1e-3", "cq.train.weight_decay=1e-6"]) == 0
    provenance = json.loads((out / "metrics.json").read_text())["provenance"]
    assert json.loads((out / "metrics.json").read_text())["status"] == "ok"
