"""Run by tests/test_engine.py under torchrun: a short SimCLR run through the engine.

Usage: torchrun --nproc_per_node=N tests/ddp_engine_run.py OUT_DIR
Every rank saves its final method weights to OUT_DIR/rank{R}.pt so the test can compare the
ranks with each other and with a single-process run on the same global batch.
"""
import os
import sys

import torch

from common.engine import train
from tests.engine_fixtures import tiny_config, tiny_dataset, tiny_simclr


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    method = tiny_simclr(deterministic_views=True)
    train(method, tiny_dataset(), tiny_config(steps=3, sync_bn=True), out_dir)
    torch.save(method.state_dict(), f"{out_dir}/rank{os.environ.get('RANK', '0')}.pt")


if __name__ == "__main__":
    main(sys.argv[1])
