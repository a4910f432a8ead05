"""Profiles: smoke.yaml is params.yaml; the paper profile stops at once without CUDA."""
from pathlib import Path

import pytest

from common import profiles
from common.errors import ConfigError
from common.profile_check import check_profile, main

REPO = Path(__file__).resolve().parents[1]


def test_smoke_profile_is_the_embedded_params():
    assert profiles.render("smoke") == (REPO / "params.yaml").read_text()


def test_every_profile_names_itself_and_keeps_the_top_level_precision():
    for name in profiles.names():
        params = profiles.load(name)
        assert name.startswith(params["profile"])  # paper_small_data is a `paper` profile
        assert isinstance(params["precision"], str)  # `dvc exp run -S precision=4-16` works in each


def test_paper_profile_needs_cuda():
    assert check_profile({"profile": "smoke"}, cuda_available=False) == "smoke"
    assert check_profile({"profile": "paper"}, cuda_available=True) == "paper"
    with pytest.raises(ConfigError, match="profile 'paper' needs CUDA"):
        check_profile({"profile": "paper"}, cuda_available=False)
    with pytest.raises(ConfigError, match="'profile' should be one of"):
        check_profile({"profile": "huge"}, cuda_available=True)


def test_cli_exits_2_with_one_line_on_cpu(tmp_path, capsys, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    params = tmp_path / "params.yaml"
    params.write_text("profile: paper\n")
    out = tmp_path / "profile.json"
    assert main(["--params", str(params), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "needs CUDA" in err and not out.exists()
    params.write_text("profile: smoke\n")
    assert main(["--params", str(params), "--out", str(out)]) == 0 and out.is_file()


def test_appendix_runs_are_checked_before_any_stage_runs():
    from common.profile_check import validate_params

    params = profiles.load("paper_small_data")
    validate_params(params)
    for runs, says in ((["infomin-fewer-resnet50"], "no variant 'fewer' in burn.baseline_variants.infomin"),
                       (["burn-base-reactnet_a"], "'burn' is not a base method"),
                       (["infomin"], "expected <method>-<variant>-<backbone>")):
        bad = {**params, "burn": {**params["burn"], "appendix": {"runs": runs}}}
        with pytest.raises(ConfigError, match=says):
            validate_params(bad)
    bad = {**params, "burn": {**params["burn"], "appendix": {"runs": ["infomin-base-resnet50"], "train": {"steps": -1}}}}
    with pytest.raises(ConfigError, match=r"burn.appendix.train \(infomin-base-resnet50\)"):
        validate_params(bad)
