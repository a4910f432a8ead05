"""The evaluation protocols of both papers as data (docs/protocols.md section 3, and section 1 for CQ).

Every number is commented with its source. Where a paper is silent the value is marked
"choice" and the reason given. Epoch milestones are in epochs of the preset; when a caller
overrides `epochs` (the smoke and mini profiles train a few epochs), milestones are scaled by
new_epochs / preset_epochs (rounded, see `TrainPreset.scaled`) so the schedule keeps its shape.

Sources:
- BURN appendix A ("Linear Evaluation", "Semi-Supervised Fine-Tuning", "Transfer Learning"),
  copied into docs/protocols.md section 3;
- CQ appendix A ("Training & fine-tuning & linear evaluation on ImageNet / on CIFAR-100"),
  copied into docs/protocols.md section 1.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Sequence

from common.errors import ConfigError


@dataclass(frozen=True)
class TrainPreset:
    """Optimizer and schedule of one evaluation protocol (SGD in every protocol of both papers)."""

    name: str
    epochs: int
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    batch_size: int
    schedule: str  # "step" (x gamma at each milestone epoch) or "cosine" (to 0, no warm-up)
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1

    def scaled(self, epochs: int | None = None, lr: float | None = None,
               batch_size: int | None = None) -> "TrainPreset":
        """The preset with overrides; milestones scale with the number of epochs."""
        out = self
        if epochs is not None:
            if int(epochs) < 1:
                raise ConfigError(f"epochs: expected a positive integer, got {epochs!r}")
            ratio = int(epochs) / self.epochs
            milestones = tuple(sorted({max(1, round(m * ratio)) for m in self.milestones}))
            out = replace(out, epochs=int(epochs), milestones=milestones)
        if lr is not None:
            if not float(lr) > 0:
                raise ConfigError(f"lr: expected a positive number, got {lr!r}")
            out = replace(out, lr=float(lr))
        if batch_size is not None:
            if int(batch_size) < 1:
                raise ConfigError(f"batch_size: expected a positive integer, got {batch_size!r}")
            out = replace(out, batch_size=int(batch_size))
        return out

    def as_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Linear evaluation (frozen backbone, one linear layer)
# --------------------------------------------------------------------------------------------

LINEAR_PRESETS: dict[str, TrainPreset] = {
    # BURN appendix A, "Linear Evaluation" (following Goyal et al. / MoCo's protocol).
    "burn": TrainPreset(
        name="burn",
        epochs=100,              # BURN app. A: "train only the classifier for 100 epochs using SGD"
        lr=30.0,                 # BURN app. A: "initial learning rate is set to 30"
        momentum=0.9,            # BURN app. A: "momentum is set to 0.9"
        nesterov=False,          # BURN app. A: plain SGD (no Nesterov mentioned)
        weight_decay=0.0,        # BURN app. A: "with no weight decay"
        batch_size=256,          # choice: BURN silent; MoCo's linear-classification default
        schedule="step",
        milestones=(60, 80),     # BURN app. A: "multiplied by 0.1 at epoch 60 and 80"
        gamma=0.1,               # BURN app. A: "multiplied by 0.1"
    ),
    # CQ appendix A, CIFAR-100: "SGD ... momentum of 0.9 and a cosine learning rate decay with an
    # initial learning rate of 0.1 ... for 50 epochs". Nesterov, batch 512 and no weight decay are
    # CQ's ImageNet linear-eval words ("we follow all the settings in Chen et al." for CIFAR-100).
    "cq": TrainPreset(
        name="cq",
        epochs=50,               # CQ app. A (CIFAR-100): 50 epochs
        lr=0.1,                  # CQ app. A (CIFAR-100): initial lr 0.1
        momentum=0.9,            # CQ app. A: momentum 0.9
        nesterov=True,           # CQ app. A (ImageNet linear eval): "Nesterov momentum optimizer"
        weight_decay=0.0,        # CQ app. A (ImageNet linear eval): "without weight decay"
        batch_size=512,          # CQ app. A: batch size 512
        schedule="cosine",       # CQ app. A (CIFAR-100): cosine decay
    ),
    # CQ appendix A, ImageNet linear evaluation.
    "cq_imagenet": TrainPreset(
        name="cq_imagenet",
        epochs=90,               # CQ app. A: "for 90 epochs"
        lr=0.2,                  # CQ app. A: "a learning rate of 0.2"
        momentum=0.9,            # CQ app. A: "momentum of 0.9"
        nesterov=True,           # CQ app. A: "Nesterov momentum optimizer"
        weight_decay=0.0,        # CQ app. A: "without weight decay"
        batch_size=512,          # CQ app. A: "a batch size of 512"
        schedule="cosine",       # choice: CQ silent; SimCLR's linear evaluation uses cosine decay
    ),
}


# --------------------------------------------------------------------------------------------
# Transfer (BURN Table 4): linear evaluation on other data sets
# --------------------------------------------------------------------------------------------

TRANSFER_PRESETS: dict[str, TrainPreset] = {
    # BURN app. A, "Transfer Learning", object-centric (CIFAR10/100, CUB-200-2011, Birdsnap):
    # "train only the classifier for 100 epochs ... 30 ... 0.1 at epoch 60 and 80 ... 0.9 ... no
    # weight decay", i.e. exactly the BURN linear evaluation.
    "object": replace(LINEAR_PRESETS["burn"], name="object"),
    # BURN app. A, scene-centric (Places205).
    "scene": TrainPreset(
        name="scene",
        epochs=28,               # BURN app. A: "train the classifier for 28 epochs using SGD"
        lr=0.01,                 # BURN app. A: "learning rate is set to 0.01 initially"
        momentum=0.9,            # BURN app. A: "momentum is set to 0.9"
        nesterov=False,          # BURN app. A: plain SGD
        weight_decay=1e-5,       # BURN app. A: "weight decay of 0.00001"
        batch_size=256,          # choice: BURN silent; Goyal et al.'s benchmark used 256
        schedule="step",
        milestones=(7, 14, 21),  # BURN app. A: "multiplied by 0.1 at every 7 epochs"
        gamma=0.1,
    ),
}


# --------------------------------------------------------------------------------------------
# Semi-supervised fine-tuning (whole network + linear layer, 1% / 10% labels)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FinetunePreset:
    """A fine-tuning protocol: the optimizer/schedule plus the (backbone lr, head multiplier)
    grid to sweep (one point = no sweep). `epochs_by_fraction` overrides `train.epochs`."""

    train: TrainPreset
    backbone_lrs: tuple[float, ...]
    head_multipliers: tuple[float, ...]
    epochs_by_fraction: tuple[tuple[float, int], ...] = ()

    def epochs_for(self, fraction: float | None) -> int:
        for frac, epochs in self.epochs_by_fraction:
            if fraction is not None and abs(frac - float(fraction)) < 1e-9:
                return epochs
        return self.train.epochs

    def grid(self) -> list[tuple[float, float]]:
        return [(lr, mult) for lr in self.backbone_lrs for mult in self.head_multipliers]


FINETUNE_PRESETS: dict[str, FinetunePreset] = {
    # BURN appendix A, "Semi-Supervised Fine-Tuning".
    "burn": FinetunePreset(
        train=TrainPreset(
            name="burn",
            epochs=20,              # BURN app. A: "using SGD for 20 epochs"
            lr=0.1,                 # placeholder: the backbone lr comes from the sweep below
            momentum=0.9,           # BURN app. A: "momentum is set to 0.9"
            nesterov=False,         # BURN app. A: plain SGD
            weight_decay=5e-4,      # BURN app. A: "weight decay of 0.0005"
            batch_size=256,         # choice: BURN silent; the usual 256 of the semi-supervised refs
            schedule="step",
            milestones=(12, 16),    # BURN app. A: "multiplied by 0.2 at epochs 12 and 16"
            gamma=0.2,              # BURN app. A: "multiplied by 0.2"
        ),
        backbone_lrs=(0.1, 0.01, 0.001),   # BURN app. A: "one from {0.1, 0.01, 0.001}"
        head_multipliers=(1.0, 10.0, 100.0),  # BURN app. A: "multiply either {1, 10, 100}"
    ),
    # CQ appendix A (CIFAR-100): SGD momentum 0.9, cosine from 0.1, 50 epochs; Nesterov, no
    # weight decay and batch 512 from the ImageNet fine-tuning text ("follow all the settings").
    "cq": FinetunePreset(
        train=TrainPreset(
            name="cq",
            epochs=50,              # CQ app. A (CIFAR-100): "for 50 epochs"
            lr=0.1,                 # CQ app. A: "initial learning rate of 0.1"
            momentum=0.9,           # CQ app. A: "momentum parameter of 0.9"
            nesterov=True,          # CQ app. A: "SGD optimizer with Nesterov momentum"
            weight_decay=0.0,       # CQ app. A: "without any weight decay"
            batch_size=512,         # CQ app. A: "a batch size of 512"
            schedule="cosine",      # CQ app. A: "cosine learning rate decay"
        ),
        backbone_lrs=(0.1,),        # CQ: one lr for the whole network
        head_multipliers=(1.0,),
    ),
    # CQ appendix A (ImageNet): as above, 30 epochs on 10% labels, 60 on 1%.
    "cq_imagenet": FinetunePreset(
        train=TrainPreset(
            name="cq_imagenet",
            epochs=30,              # CQ app. A: "30 epochs on 10% labeled data"
            lr=0.1,                 # CQ app. A: "initial learning rate of 0.1"
            momentum=0.9,           # CQ app. A: "momentum parameter of 0.9"
            nesterov=True,          # CQ app. A: "Nesterov momentum"
            weight_decay=0.0,       # CQ app. A: "without any weight decay"
            batch_size=512,         # CQ app. A: "a batch size of 512"
            schedule="cosine",      # CQ app. A: "cosine learning rate decay"
        ),
        backbone_lrs=(0.1,),
        head_multipliers=(1.0,),
        epochs_by_fraction=((0.1, 30), (0.01, 60)),  # CQ app. A: 30 epochs (10%), 60 epochs (1%)
    ),
}


def get_preset(table: dict, name: str, what: str):
    """`table[name]`, or one ConfigError naming the choices."""
    if name not in table:
        raise ConfigError(f"--preset {name!r}: expected one of {sorted(table)} for {what}")
    return table[name]


def parse_floats(text: str | Sequence[float], what: str) -> tuple[float, ...]:
    """'0.1,0.01' -> (0.1, 0.01) with one clear error for anything else."""
    if isinstance(text, str):
        try:
            values = tuple(float(t) for t in text.split(",") if t.strip())
        except ValueError:
            raise ConfigError(f"{what}: expected comma-separated numbers, got {text!r}") from None
    else:
        values = tuple(float(v) for v in text)
    if not values or any(not v > 0 for v in values):
        raise ConfigError(f"{what}: expected positive numbers, got {text!r}")
    return values
