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


def test_rank_blocks_split_every_batch_once_and_evenly():
    from eval.core.sharded import _Rows, row_block

    for total in (1, 2, 3, 7, 16):
        for world in (1, 2, 3, 4):
            blocks = [row_block(total, r, world) for r in range(world)]
            assert blocks[0][0] == 0 and blocks[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))  # contiguous, in rank order
            sizes = [end - start for start, end in blocks]
            assert max(sizes) - min(sizes) <= 1
    order = list(range(20, 0, -1))
    rows = [_Rows(order, 7, r, 3) for r in range(3)]  # batches of 7, 7, 6
    seen = sorted(i for r in rows for _, _, block in r.blocks for i in block)
    assert seen == sorted(order) and [len(r) for r in rows] == [3, 3, 3]
    assert [len(_Rows(list(range(8)), 7, r, 2)) for r in range(2)] == [2, 1]  # last batch of 1: rank 1 has none


class _WhoLoaded:
    """Item i: a 1x2x2 image filled with i, and the id of the process that loaded it."""

    def __len__(self):
        return 6

    def __getitem__(self, i):
        import torch

        return torch.full((1, 2, 2), i, dtype=torch.uint8), os.getpid()


def test_an_evaluation_loader_starts_its_workers_once():
    """One loader serves every epoch: the same worker process loads each epoch's rows (a loader
    built per epoch starts a new one each time), and every epoch gets exactly its order."""
    import torch

    from eval.core.sharded import EpochLoader

    loader = EpochLoader(_WhoLoaded(), 4, torch.device("cpu"), num_workers=1)
    workers = set()
    for order in ([5, 4, 3, 2, 1, 0], [0, 2, 4, 1, 3, 5], [3, 3, 1]):
        seen, parts = [], []
        for images, pids, part in loader.epoch(order):
            seen += images[:, 0, 0, 0].tolist()
            parts.append(part)
            workers |= set(pids.tolist())
        assert seen == order and parts == [(len(order[i:i + 4]), 0) for i in range(0, len(order), 4)]
    assert len(workers) == 1 and os.getpid() not in workers


@pytest.mark.e2e
def test_two_ranks_train_what_one_process_trains(tmp_path):
    """Augmented linear evaluation and fine-tuning (random crops and flips, BatchNorm in train mode)
    under two gloo ranks: the same losses and accuracies as one process. The batch sizes leave a
    last batch of one image, so a rank also runs a batch with no rows."""
    assert random_init(["--backbone", "cifar_resnet20", "--out", str(tmp_path / "enc"), "--params",
                        "profiles/smoke.yaml"]) == 0
    encoder = str(tmp_path / "enc" / "encoder.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    data = [a for a in DATA if a not in ("--extract-batch", "16")]
    suites = {"linear": ["--mode", "augment", "--epochs", "2", "--preset", "burn", "--lr", "0.5",
                         "--batch-size", "19"],  # 96 = 5 x 19 + 1
              "finetune": ["--preset", "cq", "--fraction", "0.5", "--epochs", "2", "--batch-size", "47",
                           "--subset-dir", str(tmp_path / "subsets")]}  # 48 labelled = 47 + 1
    for suite, extra in suites.items():
        results = {}
        for ranks in (1, 2):
            out = tmp_path / f"{suite}{ranks}"
            launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
                      if ranks > 1 else [sys.executable])
            cmd = [*launch, "-m", f"eval.{suite}", "--encoder", encoder, *data, *extra, "--out", str(out),
                   "--workers", str(ranks - 1)]
            done = run_timed(f"eval.{suite} (training split over ranks), {ranks} gloo rank(s)", cmd, env=env)
            assert done.returncode == 0, done.stderr[-3000:]
            results[ranks] = json.loads((out / "metrics.json").read_text())
        one, two = results[1], results[2]
        assert two["status"] == one["status"] == "ok"
        loss = [m["final_loss"] if suite == "linear" else m["best"]["final_loss"] for m in (one, two)]
        assert loss[1] == pytest.approx(loss[0], rel=1e-4), suite
        n_test = one["num_test"]
        assert two["top1"] == pytest.approx(one["top1"], abs=1.5 / n_test), suite  # one flip at most
        assert two["top5"] == pytest.approx(one["top5"], abs=1.5 / n_test), suite
