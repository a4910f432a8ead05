"""study/v1.py (the first edition's driver): the claims study's parts (one half, one seed) and the verdicts from finished parts."""
import json
from pathlib import Path

import pytest

from common.errors import ConfigError
from reports import claims as C
from study import v1 as study
from study.workspace import run_in_group


def test_a_part_runs_its_half_for_one_seed_with_the_data_root_made_absolute():
    profile = study.half_profile("cq")
    params = study.part_params(profile, profile["seeds"][1])
    assert params["seeds"] == [profile["seeds"][1]]
    assert Path(params["data"]["root"]).is_absolute() and Path(params["data"]["root"]).name == "data"
    assert params["cq"] == profile["cq"] and profile["seeds"] != params["seeds"]  # the profile is not changed
    with pytest.raises(ConfigError, match="--seed 99: not a seed of this half"):
        study.part_params(profile, 99)
    assert study.part_params(profile, 0, pilot=True)["seeds"] == [0]  # a pilot takes a seed outside the study
    with pytest.raises(ConfigError, match="a pilot takes another"):
        study.part_params(profile, profile["seeds"][0], pilot=True)
    assert study.part_path("burn", 0, pilot=True).parent.name == "pilots"
    with pytest.raises(ConfigError, match="half 'x'"):
        study.half_profile("x")


def test_both_halves_keep_the_pilot_seed_out_and_pair_their_seeds():
    seeds = {half: study.half_profile(half)["seeds"] for half in study.HALVES}
    assert seeds["cq"] == seeds["burn"] and len(seeds["cq"]) >= 3 and 0 not in seeds["cq"]


def test_the_halves_test_the_claims_their_profiles_announce():
    assert study.claims_in_scope(study.half_profile("cq")) == [
        "cq_c_vs_simclr_ft_fp10", "cq_c_vs_simclr_ft_fp1", "cq_c_vs_simclr_ft_4bit10", "cq_c_vs_simclr_linear",
        "cq_a_vs_simclr_linear", "cq_c_vs_cq_a", "cq_quant_vs_no_ssl"]
    assert study.claims_in_scope(study.half_profile("burn")) == ["burn_vs_mocov2", "burn_lowshot_k1_vs_mocov2"]


def part(half, seed, values):
    return {"half": half, "seed": seed, "commit": "0" * 40, "profile": study.HALVES[half],
            "minutes_this_sitting": 1.0, "finished": "2026-01-01T00:00:00Z", "values": values}


def test_verdicts_merge_the_finished_parts_seed_by_seed(tmp_path, monkeypatch):
    claim = next(c for c in C.load_claims() if c.id == "cq_c_vs_simclr_linear")
    a, b = (C.measurement_key(arm, claim.eval) for arm in (claim.a, claim.b))
    parts = tmp_path / "parts"
    parts.mkdir()
    for seed, (va, vb) in {1: (0.52, 0.50), 2: (0.53, 0.50), 3: (0.525, 0.50)}.items():
        (parts / f"cq-s{seed}.json").write_text(json.dumps(part("cq", seed, {a: {str(seed): va}, b: {str(seed): vb}})))
    monkeypatch.setattr(study, "PARTS", parts)
    merged = study.merged_values(study.finished_parts())
    assert merged[a] == {"1": 0.52, "2": 0.53, "3": 0.525}
    assert study.main(["verdicts", "--out", str(tmp_path / "out")]) == 0
    rows = {r["id"]: r for r in json.loads((tmp_path / "out" / "verdicts.json").read_text())}
    assert rows["cq_c_vs_simclr_linear"]["n"] == 3 and rows["cq_c_vs_simclr_linear"]["verdict"] == C.HOLDS
    assert rows["burn_vs_mocov2"]["verdict"] == C.NOT_RUN
    assert "cq_c_vs_simclr_linear" in (tmp_path / "out" / "claims.md").read_text()


def test_status_names_the_finished_parts_and_the_command_for_each_missing_one(tmp_path, monkeypatch):
    parts = tmp_path / "parts"
    parts.mkdir()
    seed = study.half_profile("cq")["seeds"][0]
    (parts / f"cq-s{seed}.json").write_text(json.dumps(part("cq", seed, {})))
    monkeypatch.setattr(study, "PARTS", parts)
    lines = study.status_lines()
    assert f"cq s{seed}: finished 2026-01-01T00:00:00Z at 000000000" in lines
    assert any(line.endswith("(python -m study.v1 run burn --seed %d)" % seed) for line in lines)


def test_all_runs_only_the_missing_parts_then_renders_the_verdicts(tmp_path, monkeypatch):
    parts = tmp_path / "parts"
    parts.mkdir()
    seeds = {half: study.half_profile(half)["seeds"] for half in study.HALVES}
    (parts / f"cq-s{seeds['cq'][0]}.json").write_text(json.dumps(part("cq", seeds["cq"][0], {})))
    monkeypatch.setattr(study, "PARTS", parts)
    assert study.missing_parts() == [("cq", s) for s in seeds["cq"][1:]] + [("burn", s) for s in seeds["burn"]]
    monkeypatch.setattr(study, "PARTS", study.STUDY / "parts")  # the committed parts: the study is complete
    assert study.missing_parts() == []
    assert study.main(["all", "--out", str(tmp_path / "out")]) == 0  # so nothing trains
    assert (tmp_path / "out" / "claims.md").is_file() and (tmp_path / "out" / "verdicts.json").is_file()


def test_a_failed_or_killed_stage_leaves_no_process_behind(tmp_path):
    """What a part's DVC call starts runs in its own process group, ended when the call does not
    finish cleanly: a training child cannot outlive its stage (and write beside its re-run)."""
    import os
    import time

    pidfile = tmp_path / "child.pid"
    started = time.time()
    code, _, _ = run_in_group(["sh", "-c", f"sleep 60 > /dev/null & echo $! > {pidfile}; exit 3"], tmp_path,
                                    dict(os.environ))
    assert time.time() - started < 30  # returned when the stage did, not when its child would have
    assert code == 3
    child = int(pidfile.read_text())
    for _ in range(50):  # SIGTERM is delivered asynchronously
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the stage's child survived it")


def test_the_study_profiles_are_the_registered_ones(tmp_path, monkeypatch):
    """A change to a study profile, or to the base it extends, fails here until it is registered
    again (and logged): the study's parts must all run the protocol fixed before them."""
    registered = json.loads(study.REGISTERED.read_text())
    assert set(registered) == set(study.HALVES)
    for half, entry in registered.items():
        assert entry["profile"] == study.HALVES[half]
        assert study.profile_digest(study.half_profile(half)) == entry["sha256"], f"{half}: changed since registration"
    changed = {**study.half_profile("burn"), "seeds": [1, 2]}
    assert study.profile_digest(changed) != registered["burn"]["sha256"]
    monkeypatch.setattr(study, "REGISTERED", tmp_path / "registered.json")
    assert study.register() == registered and json.loads((tmp_path / "registered.json").read_text()) == registered
