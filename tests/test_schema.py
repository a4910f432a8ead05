"""The parameter schema (common/schema.py) and bad input at the pretraining CLI: a key nobody
reads is refused with the nearest known one, a bad setting is one line and leaves no folder."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from common import profiles
from common.config import load_params
from common.errors import ConfigError
from common.schema import check_params, default_of, describe, find

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", profiles.names())
def test_every_profile_holds_only_keys_the_schema_knows(name):
    check_params(profiles.load(name))


@pytest.mark.parametrize("params, message", [
    ({"cq": {"nosuchkey": 3}}, r"cq.nosuchkey: unknown setting \(known: dataset, "),
    ({"cq": {"trian": {}}}, r"cq.trian: unknown setting \(did you mean cq.train\?\)"),
    ({"cq": {"quant": {"mdoe": "round"}}}, r"did you mean cq.quant.mode\?"),
    ({"burn": {"teacher": {"fiel": "x.pt"}}}, r"did you mean burn.teacher.file\?"),
    ({"seeeds": [0]}, r"did you mean seeds\?"),
    ({"data": "../shared/data"}, r"data: expected a mapping"),
    ({"cq": {"train": {"bacth_size": 8}}}, r"cq.train.bacth_size: unknown setting \(did you mean cq.train.batch_size\?\)"),
    ({"burn": {"train_by_method": {"byol": {"lrr": 1}}}}, r"burn.train_by_method.byol.lrr: unknown setting \(did you mean"),
    ({"eval": {"suites": {"knn": {"cli": "eval.knn", "checkpoint": ["cq"]}}}}, r"did you mean eval.suites.knn.checkpoints\?"),
    ({"eval": {"figures": {"tsne": {"together": "yes"}}}}, r"eval.figures.tsne.together: expected true or false"),
    ({"burn": {"methods": {"mocov2": {"num_negative": 8}}}}, r"did you mean burn.methods.mocov2.num_negatives\?"),
    ({"cq": {"simclr": {"temprature": 0.5}}}, r"did you mean cq.simclr.temperature\?"),
])
def test_an_unknown_or_misshapen_key_is_one_line_naming_it(params, message):
    with pytest.raises(ConfigError, match=message) as err:
        check_params(params)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("params, message", [
    ({"cq": {"quant": {"mode": "round"}}}, r"cq.quant.mode: 'round' is not one of floor \| cpt"),
    ({"cq": {"quant": {"grad_bits": 0}}}, r"cq.quant.grad_bits: expected an integer in 1..31, got 0"),
    ({"cq": {"quant": {"grad_bits": "8"}}}, r"cq.quant.grad_bits: expected an integer or null, got '8'"),
    ({"cq": {"bn_reestimation": {"enabled": "yes"}}}, r"cq.bn_reestimation.enabled: expected true or false"),
    ({"cq": {"variants": ["cq_c", 3]}}, r"cq.variants: expected a list of names"),
    ({"cq": {"precision_sets": {"sets": ["4-16", "16-4"]}}}, r"cq.precision_sets.sets: range '16-4' descends"),
    ({"precision": "abc"}, r"precision: cannot parse 'abc'"),
    ({"seeds": [0, "1"]}, r"seeds: expected a list of integers"),
    ({"burn": {"teacher": {"file": 3}}}, r"burn.teacher.file: expected a path or null, got 3"),
    ({"cq": {"views": [1]}}, r"cq.views: expected a mapping, got \[1\]"),
])
def test_a_value_of_the_wrong_kind_choice_or_range_is_one_line_naming_the_key(params, message):
    with pytest.raises(ConfigError, match=message) as err:
        check_params(params)
    assert "\n" not in str(err.value)


def test_the_readers_defaults_are_the_schemas():
    from cq.method import BN_REESTIMATION_BATCHES
    from cq.pretrain import bn_reestimation_batches

    assert default_of("cq.quant.mode") == "floor" and default_of("cq.quant.grad_bits") is None
    assert bn_reestimation_batches({}) == BN_REESTIMATION_BATCHES
    assert bn_reestimation_batches({"bn_reestimation": {"enabled": False}}) == 0
    with pytest.raises(ConfigError, match="no default"):
        default_of("cq.dataset.name")


def test_the_renderer_and_the_profile_check_refuse_a_bad_value(tmp_path):
    from common.profile_check import main as profile_check

    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "base.yaml").write_text("profile: smoke\nseeds: [0]\n")
    (folder / "mine.yaml").write_text("extends: base\ncq: {quant: {mode: half}}\n")
    with pytest.raises(ConfigError, match=r"profiles/mine.yaml: cq.quant.mode: 'half' is not one of"):
        profiles.load("mine", folder)
    params = tmp_path / "params.yaml"
    params.write_text("profile: smoke\ncq: {bn_reestimation: {batches: 0}}\n")
    assert profile_check(["--params", str(params)]) == 2


def test_registered_methods_and_free_form_sections_are_known():
    check_params({"cq": {"simclr": {"temperature": 0.5}, "byol": {}, "views": {"anything": {}}},
                "eval": {"suites": {"my_suite": {"cli": "eval.knn"}}}})


def test_overrides_are_checked_like_the_file(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("profile: smoke\ncq: {train: {steps: 1}}\n")
    assert load_params(params, ["cq.train.steps=2"])["cq"]["train"]["steps"] == 2
    with pytest.raises(ConfigError, match="cq.nosuchkey"):
        load_params(params, ["cq.nosuchkey=3"])


def test_the_schema_describes_each_key_with_its_source():
    text = describe("cq.quant")
    assert 'cq.quant.mode (name; floor | cpt; default "floor")' in text and "[CQ Eq. 9]" in text
    assert "cq.quant.grad_bits (integer or null; in 1..31; default null)" in text
    assert "cq.<" in describe("cq") and "simclr" in describe("cq")
    assert "free-form" in describe("cq.views")
    assert "eval.suites.<suite>.checkpoints (list of names)" in describe("eval.suites")
    assert "cq.train.batch_size (setting; default 256)" in describe("cq.train")  # TrainConfig's own fields
    assert "burn.methods.mocov2.num_negatives (setting; default 4096)" in describe("burn.methods.mocov2")
    assert "cq.simclrv2.num_layers (setting; default 3)" in describe("cq.simclrv2")  # the registry's default
    with pytest.raises(ConfigError, match="not a section"):
        find("cq.nosuch")
    out = subprocess.run([sys.executable, "-m", "common.config", "--describe", "burn.teacher"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0 and "burn.teacher.file" in out.stdout


@pytest.mark.parametrize("override, fragment", [
    ("cq.nosuchkey=3", "cq.nosuchkey: unknown setting"),
    ("cq.train.batch_size=1", "BatchNorm 1 image a step"),     # before: a traceback from BatchNorm
    ("cq.simclr.temperature=0", "temperature"),                # before: refused after --out was made
])
def test_bad_input_at_the_pretraining_cli_is_one_line_and_leaves_no_folder(tmp_path, override, fragment):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "cq.pretrain", "--method", "simclr", "--variant", "cq_c",
                           "--backbone", "cifar_resnet20", "--out", str(out), override, "cq.train.steps=2"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], proc.stderr[-2000:]
    assert not out.exists()


def test_an_exception_no_setting_explains_is_one_line_at_the_cli_boundary(capsys):
    from common.config import EXIT_FAILED, cli_main

    @cli_main
    def broken(argv):
        raise RuntimeError("something inside torch\nwith a second line")

    @cli_main
    def bn(argv):
        raise ValueError("Expected more than 1 value per channel when training, got input size [1, 4]")

    assert broken([]) == EXIT_FAILED
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RuntimeError: something inside torch" in err[0]
    assert bn([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: train.batch_size")


def test_a_moco_queue_smaller_than_a_step_is_refused_before_the_run_folder(tmp_path, capsys):
    """Cross-field: MoCo v2's queue (num_negatives) against the keys one step enqueues (the global
    batch); before Method.check_batch the run failed at its first step."""
    from burn.pretrain import main as burn_main

    out = tmp_path / "teacher"
    code = burn_main(["--method", "mocov2", "--backbone", "resnet18", "--as-teacher", "--out", str(out),
                      "burn.dataset.options.num_images=16", "burn.dataset.options.image_size=16",
                      "burn.views.mocov2.out_size=16", "burn.train.batch_size=8", "burn.teacher.train.steps=1",
                      "burn.methods.mocov2.num_negatives=4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "num_negatives: the queue (4) must hold" in err[0] and "(8)" in err[0]
    assert not out.exists()
