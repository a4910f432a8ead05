"""`dvc exp run -S precision=4-16` in a temporary clone changes what the CQ stage draws from."""
import json
import sys
from pathlib import Path

import pytest

from tests.engine_fixtures import clone_repo, run_timed

STAGE = "cq_pretrain@simclr-cq_a-cifar_resnet20-0"  # seed 0 of the smoke profile's seeds
OUT = Path("runs/cq/simclr-cq_a-cifar_resnet20/s0/metrics.json")


def run(cmd, cwd, env):
    done = run_timed(" ".join(cmd[1:3]), cmd, cwd=cwd, env=env)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


@pytest.mark.e2e
def test_dvc_exp_run_with_another_precision_set(tmp_path):
    clone, env = clone_repo(tmp_path / "repo")
    dvc = str(Path(sys.executable).parent / "dvc")
    run([dvc, "exp", "run", "--name", "p416", "-S", "precision=4-16", "-S", "cq.train.steps=3", STAGE],
        clone, env)
    metrics = json.loads((clone / OUT).read_text())
    assert metrics["status"] == "ok"
    assert metrics["method"]["precision_set"] == list(range(4, 17))
    counts = metrics["method"]["precision_counts"]
    assert set(map(int, counts)) == set(range(4, 17)) and sum(counts.values()) == 2 * 3

    shown = json.loads(run([dvc, "exp", "show", "--json"], clone, env))
    text = json.dumps(shown)
    assert "p416" in text and '"precision": "4-16"' in text
