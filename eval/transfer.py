"""Transfer (BURN Table 4): linear evaluation of a frozen backbone on other data sets.

Object-centric targets (CIFAR10, CIFAR100, CUB-200-2011, Birdsnap) use the "object" preset, which
is BURN's linear evaluation (100 epochs, lr 30, x0.1 at 60 and 80, momentum 0.9, no weight
decay); the scene-centric target (Places205) uses "scene" (28 epochs, lr 0.01, x0.1 every 7
epochs, momentum 0.9, weight decay 1e-5). Numbers and sources: `eval/presets.py`.

Data: `cifar10` / `cifar100` from their pickles; CUB-200-2011, Birdsnap and Places205 as
`imagefolder` data sets (`<root>/<split>/<class>/<image>`; arrange them that way, nothing is
downloaded). `--target` names the data set in the output (e.g. cub200), default the data set
name. Training and testing are `eval.linear.run_linear`, so the modes (cached / augment),
overrides and outputs are those of the linear suite, with "suite": "transfer".

CLI:
    python -m eval.transfer --encoder runs/.../encoder.pt --dataset imagefolder --root data/cub200 \
        --target cub200 --out DIR [--preset object|scene] [--mode cached|augment] \
        [--train-split train] [--test-split test] [--epochs N] ...
"""
from __future__ import annotations

from typing import Sequence

from common.config import ArgumentParser, cli_main
from eval.core.cli import (add_data_args, add_extractor_args, add_training_args, eval_process,
                           extractor_from_args, finish, spec_from_args)
from eval.linear import run_linear
from eval.presets import TRANSFER_PRESETS, get_preset

HEADLINE = "top1"  # the number `dvc exp show` lists per run (eval.pipeline's summary)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m eval.transfer", description=__doc__.splitlines()[0])
    add_extractor_args(parser)
    add_data_args(parser)
    add_training_args(parser)
    parser.add_argument("--preset", default="object", help=f"one of {sorted(TRANSFER_PRESETS)}")
    parser.add_argument("--mode", default="cached", help="cached | augment")
    parser.add_argument("--target", default=None, help="the target data set's name in the output")
    args = parser.parse_args(argv)
    preset = get_preset(TRANSFER_PRESETS, args.preset, "transfer").scaled(args.epochs, args.lr, args.batch_size)
    with eval_process(args):
        extractor = extractor_from_args(args)
        metrics = run_linear(extractor, spec_from_args(args, args.train_split), spec_from_args(args, args.test_split),
                             preset, args.mode, args.seed, suite="transfer")
        metrics["target"] = args.target or args.dataset
        finish(args, metrics, extractor.device, "eval.transfer")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
