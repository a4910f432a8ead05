"""Seeds in a profile: `seeds: [0, 1]` runs every pretraining and evaluation twice, and every cell the
report fills is rendered as mean ± half-width of the 95 % interval with n = 2.

A fresh clone of the smoke profile cut down to what CQ Table 2 reads (SimCLR and CQ-C, linear
evaluation; the smallest BURN chain, which the evaluation stage depends on), so that it runs in a
few minutes.
"""
import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.engine_fixtures import REPO, clone_repo, run_timed

CELL = re.compile(r"^-?\d+\.\d\d ± \d+\.\d\d \(n=2\) vs ")


@pytest.mark.e2e
def test_two_seeds_give_every_cell_a_mean_and_an_interval(tmp_path):
    clone, env = clone_repo(tmp_path / "repo")
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["seeds"] = [0, 1]
    params["cq"].update(methods=["simclr"], variants=["cq_c"], precision_sets={"sets": [], "methods": [], "variants": []})
    params["burn"].update(runs=["burn"], distill=[], baselines=[])
    params["eval"]["suites"] = {"linear": {**params["eval"]["suites"]["linear"], "checkpoints": ["cq"]}}
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc = str(Path(sys.executable).parent / "dvc")
    done = run_timed("dvc repro eval@linear, two seeds", [dvc, "repro", "eval@linear"], cwd=clone, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for seed in (0, 1):
        assert (clone / f"runs/eval/linear/cq/simclr-cq_c-cifar_resnet20/s{seed}/metrics.json").is_file()
    for cmd in (["-m", "reports.aggregate", "--out", "reports/measured.json"],
                ["-m", "reports.render", "--measured", "reports/measured.json", "--out", "reports"]):
        done = run_timed(cmd[1], [sys.executable, *cmd], cwd=clone, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
    table = (clone / "reports" / "tables" / "cq_table2.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| ResNet-18 |"))
    simclr, cq_c, cq_a = [c.strip() for c in row.strip("|").split("|")[1:]]
    assert CELL.match(simclr) and CELL.match(cq_c), row  # both seeds, both arms
    assert cq_a.startswith("not run"), row  # not in this profile: no number invented


def test_the_committed_mini_snapshot_has_every_seed_of_the_mini_profile():
    """reports/mini/ is one dvc repro of the mini profile: each number in it is a mean over the
    profile's seeds with its interval (fails when the seeds change and the snapshot is not made
    again)."""
    from common import profiles
    from reports.tables import load_measured, load_paper_tables
    seeds = profiles.load("mini")["seeds"]
    snapshot = REPO / "reports" / "mini"
    measured = load_measured(snapshot / "measured.json", load_paper_tables())  # also checks its keys
    cells = [(t, key, cell) for t, table in measured.tables.items()
             for key, cell in table.cells.items() if cell.has_value]
    assert len(seeds) >= 2 and len(cells) > 100
    wrong = [(t, key) for t, key, cell in cells if not (cell.n == len(seeds) and cell.half is not None)]
    assert wrong == []
    rendered = "".join(p.read_text() for p in (snapshot / "tables").glob("*.md"))
    assert rendered.count(f"(n={len(seeds)})") == len(cells)  # each number is rendered with its n
