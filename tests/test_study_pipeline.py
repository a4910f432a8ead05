"""The claims study's part driver end to end: in a fresh clone, a CQ half cut down to seconds (the
smoke profile's generated data and tiny network, SimCLR and CQ-C, kNN), one part through its DVC
worktree, then the same part again (it resumes: every stage is already done), then the verdicts."""
import json
import subprocess
import sys

import pytest
import yaml

from common.config import read_params_file
from tests.engine_fixtures import clone_repo, run_timed


@pytest.mark.e2e
def test_a_part_runs_in_its_worktree_records_its_numbers_and_resumes(tmp_path):
    clone, env = clone_repo(tmp_path / "repo")
    smoke = read_params_file(clone / "profiles" / "smoke.yaml")  # with the base laid under each
    half = read_params_file(clone / "profiles" / "study_cq.yaml")
    half["seeds"] = [1, 2]
    half["cq"] = {**smoke["cq"], "methods": ["simclr"], "variants": ["cq_c"],
                  "precision_sets": {"sets": [], "methods": [], "variants": []}}
    half["eval"] = {"suites": {"knn": {**smoke["eval"]["suites"]["knn"], "checkpoints": ["cq", "cq_random_init"]}},
                    "figures": {}}
    (clone / "profiles" / "study_cq.yaml").write_text(yaml.safe_dump(half, sort_keys=False))
    for part in (clone / "reports/study/parts").glob("*.json"):  # the real study's parts: not this one's
        part.unlink()
    subprocess.run(["git", "commit", "-qam", "tiny study half"], cwd=clone, check=True, env=env)

    run = [sys.executable, "-m", "study.v1", "run", "cq", "--seed", "2"]
    done = run_timed("study part cq s2 (tiny)", run, cwd=clone, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    part = json.loads((clone / "reports/study/parts/cq-s2.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
    assert part["commit"] == head and part["seed"] == 2
    for arm in ("cq/simclr/cq_c", "cq/simclr/baseline", "cq/simclr/untrained"):
        assert set(part["values"][f"{arm} knn:top1"]) == {"2"}, arm  # this seed only
        assert 0.0 <= part["values"][f"{arm} knn:top1"]["2"] <= 1.0
    assert (clone / ".study/cq/runs/cq/simclr-cq_c-cifar_resnet20/s2/encoder.pt").is_file()
    assert not list((clone / ".study/cq/runs/burn").glob("*/s2"))  # nothing of the other half ran

    again = run_timed("study part cq s2 again (resumes)", run, cwd=clone, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Running stage 'cq_pretrain" not in again.stdout  # every stage was done: DVC skips it
    assert json.loads((clone / "reports/study/parts/cq-s2.json").read_text())["values"] == part["values"]

    status = run_timed("study status", [sys.executable, "-m", "study.v1", "status"], cwd=clone, env=env)
    assert "cq s2: finished" in status.stdout and "cq s1: missing" in status.stdout
    verdicts = run_timed("study verdicts", [sys.executable, "-m", "study.v1", "verdicts"], cwd=clone, env=env)
    assert verdicts.returncode == 0, verdicts.stderr[-3000:]
    page = (clone / "reports/study/claims.md").read_text()
    assert "## Sanity line" in page and "| cq/simclr/cq_c | 1 |" in page
