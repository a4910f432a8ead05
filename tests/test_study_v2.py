"""The second claims study: its protocol and parts (study/v2.py) and its verdicts (reports/study_v2.py)."""
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from common import runs
from common.errors import ConfigError
from common.predictions import pack_correct
from reports import claims as C
from reports import study_v2 as V
from study import v2
from study.workspace import git


def test_every_claim_is_tested_or_declared_with_a_reason_and_at_least_18_are_tested():
    protocol = v2.protocol()
    ids = [c.id for c in C.load_claims()]
    declared = protocol["not_tested"]
    assert set(declared) <= set(ids) and all(len(reason) > 40 for reason in declared.values())
    assert len(ids) - len(declared) >= 18
    assert {c.paper for c in C.load_claims() if c.id not in declared} == {"cq", "burn"}


def test_each_tested_claims_arms_are_evaluated_by_exactly_one_part_of_a_seed():
    """Both arms of every tested claim are some part's evaluated runs, and no run is reported by two
    parts (a number for one (arm, seed) comes from one place)."""
    owner = {}
    for half, spec in v2.protocol()["halves"].items():
        for group in spec["parts"]:
            params = v2.part_params(half, group, v2.protocol()["seeds"][0])
            for key in v2.evaluated_keys(params):
                if key == "burn/teacher-mocov2-resnet18":
                    continue
                assert key not in owner, (key, owner.get(key), group)
                owner[key] = (half, group, params)
    for claim in C.load_claims():
        if claim.id in v2.protocol()["not_tested"]:
            continue
        for arm in (claim.a, claim.b):
            half = "cq" if arm["paper"] == "cq" else "burn"
            assert any(v2.evaluates(C.run_key(arm, params), params) for h, _, params in owner.values()
                       if h == half), (claim.id, arm)


def test_a_part_runs_only_the_baseline_and_untrained_stages_it_evaluates():
    main, sets = v2.part_params("cq", "main", 1), v2.part_params("cq", "sets", 1)
    assert v2.needed("cq_baseline@simclr-cifar_resnet20-1", main) and v2.needed("cq_random_init@cifar_resnet20-1", main)
    assert not v2.needed("cq_baseline@simclr-cifar_resnet20-1", v2.part_params("cq", "a_quant", 1))
    assert not v2.needed("cq_random_init@cifar_resnet20-1", sets) and v2.needed("cq_precision_sets@x", sets)
    assert "svm" not in v2.part_params("burn", "main", 1)["eval"]["suites"]  # a suite set to null is dropped
    assert list(sets["eval"]["suites"]["finetune"]["variants"]) == ["4bit-10pct"]  # variants replaced
    assert main["seeds"] == [1] and main["data"]["root"].startswith("/")
    with pytest.raises(ConfigError, match="not a registered seed"):
        v2.part_params("cq", "main", 0)
    with pytest.raises(ConfigError, match="expected one of"):
        v2.part_params("cq", "nosuch", 1)


def test_the_registration_refuses_once_a_part_exists(tmp_path, monkeypatch):
    monkeypatch.setattr(v2, "PARTS", tmp_path)
    (tmp_path / "cq-main-s1.json").write_text("{}")
    with pytest.raises(ConfigError, match="before any result"):
        v2.register()


# ----------------------------------------------------------------------------- verdicts

def _arm(rng, rate, n=2_000):
    return pack_correct((rng.random(n) < rate).astype(np.uint8))


def _protocol():
    return {"not_tested": {}, "gate": {"proposed_margin": 10.0, "baseline_margin": 0.0}}


def test_verdicts_holm_and_the_gate_on_synthetic_parts(tmp_path):
    claims = [c for c in C.load_claims() if c.id in ("cq_c_vs_simclr_linear", "cq_a_vs_simclr_linear",
                                                       "cq_quant_vs_no_ssl", "burn_vs_mocov2")]
    rng = np.random.default_rng(0)
    cq = lambda variant: {"paper": "cq", "method": "simclr", "variant": variant}
    for seed in (1, 2, 3):
        accuracies = [(cq("cq_c"), 0.60), (cq("baseline"), 0.50), (cq("cq_a"), 0.505), (cq("untrained"), 0.30),
                      ({**cq("cq_quant"), "precision": "6-16"}, 0.36),
                      ({"paper": "burn", "run": "burn"}, 0.45), ({"paper": "burn", "run": "mocov2_tuned"}, 0.35),
                      ({"paper": "burn", "run": "untrained"}, 0.30), (C.TEACHER, 0.70)]
        per_image, values = {}, {}
        for arm, rate in accuracies:
            for suite in C.SANITY_SUITES:
                key = C.measurement_key(arm, {"suite": suite, "key": "top1"})
                s = "0" if arm == C.TEACHER else str(seed)
                per_image[key], values[key] = {s: _arm(rng, rate)}, {s: rate}
        (tmp_path / f"p{seed}.json").write_text(json.dumps(
            {"half": "x", "group": "g", "seed": seed, "commit": "c", "cpu": "cpu", "minutes_this_sitting": 1,
             "values": values, "per_image": per_image}))
    values, per_image, records = V.load_parts(tmp_path)
    rows = {r["id"]: r for r in V.judge(claims, values, per_image, _protocol(), ["abl1_kl_only"])}
    assert rows["cq_c_vs_simclr_linear"]["verdict"] == C.HOLDS  # +10 points on 6,000 image draws
    assert rows["cq_c_vs_simclr_linear"]["low"] > 5 and rows["cq_c_vs_simclr_linear"]["p_holm"] < 0.05
    assert rows["cq_a_vs_simclr_linear"]["verdict"] == C.INCONCLUSIVE  # +0.5 points: not resolved
    # CQ-Quant is +6 over the untrained network, short of a proposed arm's +10 line; but a claim
    # against the untrained network is that margin itself: judged, not gated (the registered rule)
    assert rows["cq_quant_vs_no_ssl"]["gate"] == {} and rows["cq_quant_vs_no_ssl"]["verdict"] == C.HOLDS
    # the same arm in a claim against a trained arm is gated, and fails the +10 line
    quant = next(c for c in claims if c.id == "cq_quant_vs_no_ssl")
    gated = V.judge([replace(quant, id="gated", b=cq("baseline"))], values, per_image, _protocol(), ["abl1_kl_only"])[0]
    assert gated["verdict"] == C.NOT_TESTABLE and gated["failed_gate"] == ["cq/simclr/cq_quant@6-16"]
    # MoCo v2 +5 over its untrained network is a baseline: it only has to beat it (BURN: +15)
    burn = rows["burn_vs_mocov2"]
    assert burn["gate"]["burn/mocov2_tuned"]["role"] == "baseline" and burn["gate"]["burn/teacher"]["passes"]
    assert burn["verdict"] == C.HOLDS
    assert {i for i, r in rows.items() if "p_holm" in r} == {"cq_c_vs_simclr_linear", "cq_a_vs_simclr_linear",
                                                            "cq_quant_vs_no_ssl", "burn_vs_mocov2"}
    # the page: one row per claim; the sanity table has every trained arm (the teacher too) with its
    # lower bounds, gated or not; the parts table one row per part
    sanity = V.sanity_line(claims, per_image, _protocol()["gate"], ["abl1_kl_only"])
    assert sanity["cq/simclr/cq_quant@6-16"]["passes"] is False and sanity["burn/teacher"]["passes"]
    assert sanity["burn/mocov2_tuned"] == burn["gate"]["burn/mocov2_tuned"]
    page = V.to_markdown(list(rows.values()), records, sanity)
    claim_table, sanity_table, parts_table = page.split("\n\n| ")[1:]
    assert claim_table.count("\n| ") == 4 and sanity_table.count("\n| ") == len(sanity) == 7
    assert parts_table.count("\n| ") == 3 and "(effects.png)" in page and "≥ +10" in sanity_table


def test_the_protocol_and_profiles_are_the_registered_ones_and_no_part_precedes_registration():
    if not v2.REGISTERED.is_file():
        assert not list(v2.PARTS.glob("*.json")), "a part exists without a registration"
        return
    assert json.loads(v2.REGISTERED.read_text()) == v2.digests(), "changed since registration (log it in RUN.md)"


def test_the_registered_power_table_is_the_one_the_first_editions_numbers_give():
    assert v2.protocol()["power"] == v2.power_table()
    assert set(v2.protocol()["power"]) == {c.id for c in C.load_claims()}


def _part(folder: Path, name: str, commit: str) -> None:
    (folder / f"{name}.json").write_text(json.dumps({"commit": commit}))


def test_parts_run_one_commit_and_a_workspace_is_made_at_it(tmp_path, monkeypatch):
    parts, spaces = tmp_path / "parts", tmp_path / "spaces"
    parts.mkdir()
    monkeypatch.setattr(v2, "PARTS", parts)
    monkeypatch.setattr(v2, "WORKSPACES", spaces)
    assert v2.parts_commit() is None
    head = git("rev-parse", "HEAD")
    _part(parts, "cq-main-s1", head)
    try:
        ws = v2.part_workspace("cq")  # a fresh checkout: the worktree is made at the parts' commit
        assert git("rev-parse", "HEAD", cwd=ws) == head and (ws / "dvc.yaml").is_file()
        _part(parts, "cq-main-s1", "0" * 40)  # the workspace now holds other code than the parts ran
        with pytest.raises(ConfigError, match="finished parts at 000000000"):
            v2.part_workspace("cq")
        _part(parts, "cq-main-s2", head)
        with pytest.raises(ConfigError, match="parts ran at 2 commits"):
            v2.parts_commit()
    finally:
        git("worktree", "remove", "--force", str(spaces / "cq"))


def test_the_queue_runs_the_missing_parts_seed_by_seed_and_makes_the_teacher_before_burn(tmp_path, monkeypatch):
    parts = tmp_path / "parts"
    parts.mkdir()
    monkeypatch.setattr(v2, "PARTS", parts)
    order = v2.queue_order()
    spec = v2.protocol()
    assert len(order) == len(set(order)) == len(spec["seeds"]) * sum(len(h["parts"]) for h in spec["halves"].values())
    assert [seed for _, _, seed in order] == sorted(seed for _, _, seed in order)  # whole seeds first
    for half, group, seed in order[:3]:
        _part(parts, f"{half}-{group}-s{seed}", "a" * 40)
    calls = []
    monkeypatch.setattr(v2, "ensure_teacher", lambda: calls.append("teacher"))
    monkeypatch.setattr(v2, "run_part", lambda half, group, seed: calls.append((half, group, seed)))
    assert v2.run_queue() == len(order) - 3
    ran = [c for c in calls if c != "teacher"]
    assert ran == order[3:]
    for i, call in enumerate(calls):  # a BURN part comes right after a teacher check, a CQ part never does
        if call != "teacher":
            assert ((calls[i - 1] if i else None) == "teacher") == (call[0] == "burn")


def _clone_with_parts_at_its_head(tmp_path: Path) -> tuple[Path, str]:
    """(clone, the commit its parts name): a clone of this repository whose committed part files name
    the clone's HEAD before they were rewritten (a shallow CI checkout may lack the study's commit),
    with this tree's repeat script committed in it."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(v2.REPO), str(clone)], check=True)
    head = git("rev-parse", "HEAD", cwd=clone)
    for path in (clone / "reports/study/v2/parts").glob("*.json"):
        path.write_text(json.dumps({**json.loads(path.read_text()), "commit": head}))
    script = "study/repeat_v2.sh"  # the script under test is this tree's, not the last commit's
    (clone / script).write_text((v2.REPO / script).read_text())
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "parts at HEAD"],
                   cwd=clone, check=True)
    return clone, head


def test_the_repeat_prepares_the_workspaces_at_the_parts_commit_and_refuses_a_changed_tree(tmp_path):
    clone, code = _clone_with_parts_at_its_head(tmp_path)
    v2dir = clone / "reports/study/v2"
    repeat = lambda: subprocess.run(["bash", "study/repeat_v2.sh", "--prepare"], cwd=clone, text=True,
                                    capture_output=True, env={**os.environ, "PY": sys.executable})
    parts = sorted(p.name for p in (v2dir / "parts").glob("*.json"))
    (v2dir / "RUN.md").write_text("edited\n")  # an uncommitted change: refused, nothing removed
    done = repeat()
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "uncommitted" in done.stderr
    assert sorted(p.name for p in (v2dir / "parts").glob("*.json")) == parts and parts
    git("checkout", "--", "reports/study/v2", cwd=clone)
    (v2dir / "parts/cq-main-s9.json").write_text("{}")  # an untracked part (not committed yet): refused too
    assert repeat().returncode == 2 and (v2dir / "parts/cq-main-s9.json").is_file()
    (v2dir / "parts/cq-main-s9.json").unlink()
    done = repeat()
    assert done.returncode == 0, done.stderr
    for ws in ("cq", "burn", "teacher"):  # the study's code, where the driver reuses them
        assert git("rev-parse", "HEAD", cwd=clone / ".study2" / ws) == code
    assert not list((v2dir / "parts").glob("*.json")) and not list((v2dir / "runs").iterdir())
    assert (clone / ".study2/repeat.commit").read_text().strip() == code
    assert repeat().returncode == 0  # prepared once: a re-run keeps what the repeat has made
    git("checkout", "--", "reports/study/v2", cwd=clone)  # git still holds the committed study
    assert sorted(p.name for p in (v2dir / "parts").glob("*.json")) == parts
