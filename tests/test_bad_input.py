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

from common import profiles
from common.checkpoint import save_checkpoint
from tests.engine_fixtures import write_encoder

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "profiles" / "smoke.yaml")
CQ = ["cq.pretrain", "--params", SMOKE, "--method", "simclr", "--variant", "cq_a", "--backbone", "cifar_resnet20",
      "--out", "{out}"]
BURN = ["burn.pretrain", "--params", SMOKE, "--method", "byol", "--backbone", "reactnet_a", "--out", "{out}"]
PARAMS = profiles.render("smoke")  # the plain params.yaml of the smoke profile


def replaced(text: str, old: str, new: str) -> str:
    assert old in text, old  # a bad file that is not bad would test nothing
    return text.replace(old, new, 1)


FILES = {
    "invalid.yaml": "cq: {train: [unclosed\n",
    "list.yaml": "- 1\n- 2\n",
    "no_cq_train.yaml": "seed: 0\nprecision: 6-16\ncq: {dataset: {name: synthetic}}\n",
    "no_cq_views.yaml": "seed: 0\ncq: {dataset: {name: synthetic}, train: {steps: 1}}\n",
    # what a failed `dvc exp run -S` leaves in params.yaml
    "bad_precision.yaml": replaced(PARAMS, "\nprecision: 6-16\n", "\nprecision: abc\n"),
    "no_base.yaml": "extends: nothere\nprofile: smoke\n",  # a profile whose base file is missing
    "bad_byol_steps.yaml": replaced(PARAMS, "  train_by_method: {}", "  train_by_method: {byol: {steps: 0}}"),
}

ENCODER_CLIS = {"linear": ["eval.linear", "--epochs", "1"], "knn": ["eval.knn"], "finetune": ["eval.finetune"]}
BAD_ENCODERS = {  # file in {tmp} -> message fragment
    "wrong_width.pt": "weights do not fit backbone 'cifar_resnet20'",
    "wrong_arch.pt": "weights do not fit backbone 'resnet18'",
    "not_a_dict.pt": "'state_dict' must map names to tensors",
    "diverged/encoder.pt": "its run ended 'diverged'",
    "nan/encoder.pt": "non-finite weights",
    "random.pt": "not a weights-only torch file",
}


def write_bad_encoders(tmp: Path) -> None:
    good = write_encoder(tmp / "good.pt")  # CIFAR ResNet-20, width 0.5
    state = good.state_dict()
    save_checkpoint({"backbone": "cifar_resnet20", "backbone_kwargs": {"width": 0.25}, "state_dict": state},
                    tmp / "wrong_width.pt")
    save_checkpoint({"backbone": "resnet18", "backbone_kwargs": {}, "state_dict": state}, tmp / "wrong_arch.pt")
    save_checkpoint({"backbone": "cifar_resnet20", "backbone_kwargs": {"width": 0.5}, "state_dict": [1, 2]},
                    tmp / "not_a_dict.pt")
    write_encoder(tmp / "diverged" / "encoder.pt")
    (tmp / "diverged" / "metrics.json").write_text(json.dumps({"status": "diverged", "step": 3}))
    nan_state = {k: (v.fill_(float("nan")) if k == "conv1.weight" else v) for k, v in state.items()}
    save_checkpoint({"backbone": "cifar_resnet20", "backbone_kwargs": {"width": 0.5}, "state_dict": nan_state},
                    tmp / "nan" / "encoder.pt")
    (tmp / "random.pt").write_bytes(bytes(range(256)) * 20)
    write_encoder(tmp / "resnet18.pt", "resnet18", width=0.25)


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
    # the params check that opens every `dvc repro` / `dvc exp run`, and `make plan`
    "check_profile precision=abc": (["common.profile_check", "--params", "{tmp}/bad_precision.yaml", "--out",
                                     "{out}/profile.json"], "precision: cannot parse 'abc'"),
    "check_profile names the undo": (["common.profile_check", "--params", "{tmp}/bad_precision.yaml", "--out",
                                      "{out}/profile.json"], "git checkout"),
    "check_profile byol steps=0": (["common.profile_check", "--params", "{tmp}/bad_byol_steps.yaml", "--out",
                                    "{out}/profile.json"], "cq.train_by_method.byol.steps: expected an integer >= 1"),
    "check_profile missing base": (["common.profile_check", "--params", "{tmp}/no_base.yaml", "--out",
                                    "{out}/profile.json"], "no_base.yaml: /"),
    "cq profile with a missing base": (["cq.pretrain", "--params", "{tmp}/no_base.yaml", *CQ[3:]], "nothere.yaml: not found"),
    "plan -S precision=abc": (["common.plan", "--params", SMOKE, "-S", "precision=abc"],
                              "with -S: precision: cannot parse 'abc'"),
    "plan -S seed=abc": (["common.plan", "--params", SMOKE, "-S", "seed=abc"], "seed: expected an integer"),
    "plan -S no value": (["common.plan", "--params", SMOKE, "-S", "precision"], "expected key=value"),
}
for _where, _named in (("{tmp}/good.pt/run", "good.pt"), ("/proc/lowprec-ssl-test/run", "lowprec-ssl-test")):
    # a file where a folder should be; a place nobody can create folders in
    CASES[f"cq unwritable {_named}"] = (CQ[:-1] + [_where, "cq.train.steps=1"], _named)
    CASES[f"linear unwritable {_named}"] = (["eval.linear", "--epochs", "1", "--encoder", "{tmp}/good.pt",
                                             "--dataset", "synthetic", "--options", "{num_images: 32, image_size: 16}",
                                             "--out", _where], _named)
    CASES[f"export unwritable {_named}"] = (["eval.export_detectron2", "{tmp}/resnet18.pt", _where + "/r18.pkl"],
                                            _named)
for _suite, _cli in ENCODER_CLIS.items():  # an encoder that cannot be evaluated, for every eval CLI
    for _file, _fragment in BAD_ENCODERS.items():
        CASES[f"{_suite} {_file}"] = ([*_cli, "--encoder", "{tmp}/" + _file, "--dataset", "synthetic",
                                       "--options", "{num_images: 32, image_size: 16}", "--out", "{out}"], _fragment)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_nothing_written(name, tmp_path, capsys):
    argv, fragment = CASES[name]
    for file, text in FILES.items():
        (tmp_path / file).write_text(text)
    write_bad_encoders(tmp_path)
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
    assert json.loads((out / "metrics.json").read_text())["status"] == "ok"


def test_on_and_off_work_unquoted_as_yaml_reads_them():
    """`cq.train.channels_last=on` (YAML: true) means "on", as the setting's own name for it."""
    from common.config import apply_overrides
    from common.engine import TrainConfig
    for text, expected in (("on", "on"), ("off", "off"), ("auto", "auto")):
        train = apply_overrides({"t": {"steps": 1}}, [f"t.channels_last={text}"])["t"]
        assert TrainConfig.from_dict(train).channels_last == expected
    assert TrainConfig.from_dict(apply_overrides({"t": {"steps": 1}}, ["t.amp=off"])["t"]).amp == "off"
    with pytest.raises(Exception, match="train.amp: expected one of"):
        TrainConfig.from_dict(apply_overrides({"t": {"steps": 1}}, ["t.amp=on"])["t"])  # amp has no "on"
