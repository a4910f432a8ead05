"""Every parameter file in profiles/ is a runnable pipeline: DVC resolves dvc.yaml with it, every
evaluation call it plans parses with its CLI, its training settings, views and networks build,
and its report mapping fits the papers' tables. (Running smoke end to end: tests/test_e2e.py;
mini is run by hand, see README "Profiles"; paper needs GPUs.)"""
import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common import profiles
from common.backbones import build_backbone
from common.config import read_params_file, train_settings
from common.engine import TrainConfig
from common.profile_check import PROFILES
from common.views import build_views
from eval import pipeline
from reports.aggregate import aggregate
from reports.mapping import load_report_params

REPO = Path(__file__).resolve().parents[1]
PROFILE_FILES = [profiles.profile_path(name) for name in profiles.names()]
DVC = str(Path(sys.executable).parent / "dvc")


def load(path: Path) -> dict:
    return read_params_file(path)  # the base laid under the profile


def test_the_profiles_are_there():
    assert {p.stem for p in PROFILE_FILES} >= {"smoke", "mini", "paper", "paper_small_data"}


@pytest.fixture(params=PROFILE_FILES, ids=lambda p: p.stem)
def profile(request) -> tuple[Path, dict]:
    return request.param, load(request.param)


class Parsed(BaseException):
    """Raised instead of running a CLI once its arguments have parsed."""


def parses(module: str, argv: list[str], monkeypatch) -> bool:
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        original(self, args, namespace)  # a bad command line raises ConfigError: main returns 2
        raise Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    try:
        __import__(module, fromlist=["main"]).main(argv)
    except Parsed:
        return True
    except SystemExit:
        return False
    finally:
        monkeypatch.setattr(argparse.ArgumentParser, "parse_args", original)
    return False


def test_every_planned_evaluation_call_parses(profile, monkeypatch):
    path, params = profile
    assert params["profile"] in PROFILES
    for section in ("suites", "figures"):
        for suite in (params["eval"].get(section) or {}):
            for call in pipeline.plan(params, suite, section):
                assert parses(call["cli"], call["argv"], monkeypatch), f"{path.stem} {suite}: {call['argv']}"
                if "features" in call:
                    assert parses("eval.features", call["features"], monkeypatch), f"{path.stem} {suite} features"


def test_training_settings_views_and_networks_build(profile):
    _, params = profile
    cq, burn = params["cq"], params["burn"]
    for method in cq["methods"]:
        TrainConfig.from_dict({"seed": 0, **train_settings(params, "cq", method)})
    for views in [*cq["views"].values(), *burn["views"].values()]:
        views = dict(views)
        build_views(views.pop("recipe"), views.pop("out_size"), **views)
    for name in cq["backbones"]:
        build_backbone(name, **cq["backbone_options"].get(name, {}))
    build_backbone(burn["student"], **burn["backbone_options"][burn["student"]])
    methods = {*burn.get("distill", []), *burn["baselines"], "burn"}
    for method in methods:
        TrainConfig.from_dict({"seed": 0, **train_settings(params, "burn", method)})
        assert method in burn["methods"] or method == "s2bnn"
    teacher = burn["teacher"]
    TrainConfig.from_dict({"seed": 0, **train_settings(params, "burn", teacher["method"]), **teacher.get("train", {})})
    assert set(burn["runs"]) <= set(burn["variants"])


def test_report_mapping_fits_the_papers_tables(profile, tmp_path):
    path, _ = profile
    measured = aggregate(load_report_params(path), tmp_path)  # no runs yet: every cell "not run"
    assert measured["context"]["profile"] == load(path)["profile"] and measured["tables"]


def test_dvc_resolves_the_pipeline_with_every_profile(tmp_path):
    """`dvc stage list` interpolates dvc.yaml with each profile (lists, matrices, per-item params)."""
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}  # nothing phones home
    subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=tmp_path, check=True, env=env)
    subprocess.run([DVC, "config", "core.analytics", "false"], cwd=tmp_path, check=True, env=env)
    stages = {}
    for path in PROFILE_FILES:
        (tmp_path / "params.yaml").write_text(profiles.render(path.stem))
        out = subprocess.run([DVC, "stage", "list", "--name-only"], cwd=tmp_path, capture_output=True, text=True,
                             env=env)
        assert out.returncode == 0, f"{path.stem}: {out.stderr}"
        stages[path.stem] = set(out.stdout.split())
    # every pretraining stage once per seed (mini: seeds [0, 1]), the other precision sets beside
    assert {"burn_stage2@fs_l1-0", "burn_stage2@fs_l1-1", "burn_distill@s2bnn-1", "burn_teacher@1",
            "cq_precision_sets@simclr-cq_c-cifar_resnet20-8-16-1", "eval@transfer"} <= stages["mini"]
    assert {"eval@linear_burn", "cq_pretrain@simclr-cq_c-resnet34-0", "eval@detection",
            "cq_precision_sets@simclr-cq_a-resnet18-8-16-0"} <= stages["paper"]
    small = stages["paper_small_data"]
    assert "cq_pretrain@byol-cq_quant-cifar_resnet152-0" in small and "burn_baseline@infomin-0" in small
    assert not any(s.startswith("burn_distill@") for s in small)  # burn.distill: [] turns S2-BNN off
    assert not any(s.endswith("-1") for s in stages["smoke"])  # smoke: one seed


def test_the_parse_check_can_fail(monkeypatch):
    assert not parses("eval.knn", ["--encoder", "x.pt", "--out", "o", "--nope", "1"], monkeypatch)
    assert parses("eval.knn", ["--encoder", "x.pt", "--out", "o", "--dataset", "synthetic"], monkeypatch)


def leaves(tree: dict, prefix: tuple = ()) -> dict:
    """{(key, sub, ...): value} of a nested mapping; an empty mapping is a leaf."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(leaves(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = value
    return out


def test_a_setting_every_profile_shares_is_written_once_in_the_base():
    from common.config import read_yaml_mapping

    resolved = {name: leaves(profiles.load(name)) for name in profiles.names()}
    first, *others = resolved.values()
    shared = {k: v for k, v in first.items() if all(k in o and o[k] == v for o in others)}
    base = leaves(read_yaml_mapping(profiles.FOLDER / f"{profiles.BASE}.yaml"))
    assert len(base) >= 25 and set(shared) >= set(base)  # the base holds only shared settings...
    for name in profiles.names():
        own = leaves(read_yaml_mapping(profiles.profile_path(name)))
        # every profile extends the base, directly or through the profile it refines (the second
        # claims study lays its changes over the first's frozen profiles)
        chain = [own.get(("extends",))]
        while chain[-1] not in (profiles.BASE, None):
            chain.append(read_yaml_mapping(profiles.profile_path(chain[-1])).get("extends"))
        assert chain[-1] == profiles.BASE, (name, chain)
        # ...and no profile writes one of them again
        assert not [k for k in own if k in shared], name
        assert not [k for k, v in own.items() if base.get(k, object()) == v], name


def test_the_rendered_params_read_back_as_the_profile():
    from common.config import parse_yaml

    for name in profiles.names():
        text = profiles.render(name)
        assert text.startswith("# Rendered from profiles/base.yaml") and "extends" not in parse_yaml(text, name)
        assert parse_yaml(text, name) == profiles.load(name)


def test_parameters_written_by_the_project_read_back_unchanged():
    """Strings YAML 1.2 would read as numbers stay strings (PyYAML's own dumper leaves "1e-3"
    bare), key order is kept, and the flow form is one line, as a command-line option needs."""
    import yaml

    from common.config import dump_params, parse_yaml

    data = {"z": "1e-3", "a": 1e-3, "lr": ".5", "nested": {"b": "5.", "list": [1, "2e5"]}}
    assert parse_yaml(yaml.safe_dump(data), "plain")["z"] != "1e-3"  # the trap dump_params avoids
    for flow in (None, True):
        text = dump_params(data, flow=flow)
        assert parse_yaml(text, "dumped") == data and list(parse_yaml(text, "dumped")) == ["z", "a", "lr", "nested"]
    assert "\n" not in dump_params(data, flow=True).strip()


def test_extends_merges_key_by_key_and_bad_bases_are_one_error(tmp_path, capsys):
    from common.config import ConfigError, load_params, read_params_file

    # the merge alone (read_params_file): these keys are not the schema's, which load_params checks
    (tmp_path / "base.yaml").write_text("a: {x: 1, y: [1, 2], z: {p: 1}}\nlr: '1e-3'\nkeep: 5\n")
    (tmp_path / "one.yaml").write_text("extends: base\nprofile: one\na: {y: [3], z: {q: 2}}\nkeep: 6\n")
    assert read_params_file(tmp_path / "one.yaml") == {"profile": "one", "a": {"y": [3], "z": {"q": 2, "p": 1}, "x": 1},
                                                       "keep": 6, "lr": "1e-3"}
    assert list(read_params_file(tmp_path / "one.yaml")) == ["profile", "a", "keep", "lr"]  # the profile's order first
    with pytest.raises(ConfigError, match="profiles/one.yaml: a: unknown setting"):  # the renderer checks too
        profiles.render("one", tmp_path)
    (tmp_path / "valid.yaml").write_text("profile: smoke\ncq: {train: {lr: '1e-3'}}\n")
    text = profiles.render("valid", tmp_path)
    assert "'1e-3'" in text  # a string a YAML 1.2 reader would take for a float stays a string
    for body, says in (("extends: nothere\n", "nothere.yaml: not found"),
                       ("extends: loop\n", "a cycle"),
                       ("extends: [base]\n", "extends: expected the name of a file beside it")):
        (tmp_path / "loop.yaml").write_text(body)
        with pytest.raises(ConfigError, match=says):
            load_params(tmp_path / "loop.yaml")
    with pytest.raises(ConfigError, match="a: unknown setting"):  # and every reader checks the keys
        load_params(tmp_path / "one.yaml")
    assert profiles.names(tmp_path) == ["loop", "one", "valid"]  # the base is not a profile
    out = tmp_path / "params.yaml"
    assert profiles.main(["nope", "--out", str(out)]) == 2 and not out.exists()
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "profile 'nope': not in" in err
    assert profiles.main(["smoke", "--out", str(out)]) == 0
    assert out.read_text() == profiles.render("smoke")
