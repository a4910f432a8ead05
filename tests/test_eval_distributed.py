"""Evaluation under torchrun: two gloo ranks (each with a loader worker) share the feature extraction
of linear evaluation and kNN and write the same metrics as one process."""
import json
import os
import sys

import pytest

from common.random_init import main as random_init
from tests.engine_fixtures import run_timed

DATA = ["--dataset", "synthetic", "--options", "{num_images: 96, image_size: 32}",
        "--test-split", "test", "--device", "cpu", "--extract-batch", "16"]


@pytest.mark.e2e
def test_two_ranks_give_the_metrics_of_one_process(tmp_path):
    assert random_init(["--backbone", "cifar_resnet20", "--out", str(tmp_path / "enc"), "--params",
                        "profiles/smoke.yaml"]) == 0
    encoder = str(tmp_path / "enc" / "encoder.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    results = {}
    for suite, extra in (("linear", ["--epochs", "3", "--preset", "burn", "--lr", "0.5"]), ("knn", ["--k", "10"])):
        for ranks in (1, 2):
            out = tmp_path / f"{suite}{ranks}"
            launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
                      if ranks > 1 else [sys.executable])
            cmd = [*launch, "-m", f"eval.{suite}", "--encoder", encoder, *DATA, *extra, "--out", str(out),
                   "--cache-dir", str(tmp_path / f"cache{ranks}"), "--workers", str(ranks - 1)]  # and loader workers
            done = run_timed(f"eval.{suite}, {ranks} gloo rank(s)", cmd, env=env)
            assert done.returncode == 0, done.stderr[-3000:]
            results[suite, ranks] = json.loads((out / "metrics.json").read_text())
        one, two = results[suite, 1], results[suite, 2]
        assert two["num_train"] == one["num_train"] == 96 and two["num_test"] == one["num_test"]
        assert two["top1"] == pytest.approx(one["top1"], abs=1.5 / one["num_test"]), suite  # one flip at most
        assert two["top5"] == pytest.approx(one["top5"], abs=1.5 / one["num_test"]), suite
    # the feature caches the two runs wrote (rank 0 only) hold the same features
    import torch

    caches = [sorted((tmp_path / f"cache{r}").glob("*.pt")) for r in (1, 2)]
    assert len(caches[0]) == len(caches[1]) == 2
    for a, b in zip(*caches):
        fa, fb = torch.load(a, weights_only=True)["features"], torch.load(b, weights_only=True)["features"]
        assert torch.allclose(fa, fb, atol=1e-5)


def test_augmented_linear_evaluation_says_it_runs_in_one_process(monkeypatch):
    from eval import linear
    from common.errors import ConfigError

    monkeypatch.setattr(linear, "rank_world", lambda: (0, 2))
    with pytest.raises(ConfigError, match="--mode augment: not yet split over torchrun ranks"):
        linear.run_linear(None, None, None, None, mode="augment")
