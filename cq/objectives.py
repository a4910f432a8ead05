"""The Contrastive Quant objectives as plans: which (view, precision) features, which NCE pairs.

Notation of the paper (Sec. 3.2-3.3): Aug1, Aug2 two random input augmentations, F_q the
encoder quantized to q bits, q1 != q2 drawn each iteration from the precision set.

    baseline  f = F(Aug1 x), f+ = F(Aug2 x)                            NCE(f, f+)        (Eq. 2)
    cq_a      f = F_q1(Aug1 x), f+ = F_q2(Aug2 x)                      NCE(f, f+)        (Eq. 4)
    cq_b      f1 = F_q1(Aug1 x), f2 = F_q2(Aug1 x),                                       (Eq. 5)
              f1+ = F_q1(Aug2 x), f2+ = F_q2(Aug2 x)                                      (Eq. 6)
              NCE(f1, f1+) + NCE(f2, f2+)                                                  (Eq. 7)
    cq_c      the four features of cq_b;
              NCE(f1, f1+) + NCE(f2, f2+) + NCE(f1, f2) + NCE(f1+, f2+)                    (Eq. 8)
    cq_quant  no input augmentation: NCE(F_q1(x), F_q2(x))                     (Sec. 4.5, Table 8)

A feature is named by a `Key(view, bits)`: view 1 = Aug1 x, 2 = Aug2 x, 0 = x unaugmented;
bits None = full precision. A `Plan` lists the keys to encode (each encoded once, in order) and
the pairs whose NCE terms are summed. The objectives are exactly these lists, so a test can
compare them with the equations one by one.
"""
from __future__ import annotations

from dataclasses import dataclass

from common.errors import ConfigError

VARIANTS = ("baseline", "cq_a", "cq_b", "cq_c", "cq_quant")


@dataclass(frozen=True)
class Key:
    view: int  # 0: unaugmented x, 1: Aug1(x), 2: Aug2(x)
    bits: int | None  # None: full precision


@dataclass(frozen=True)
class Plan:
    keys: tuple[Key, ...]
    pairs: tuple[tuple[Key, Key], ...]

    @property
    def views(self) -> tuple[int, ...]:
        """The input views the plan needs, in order of first use."""
        return tuple(dict.fromkeys(k.view for k in self.keys))


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ConfigError(f"cq variant: expected one of {VARIANTS}, got {variant!r}")
    return variant


def needs_precisions(variant: str) -> bool:
    return check_variant(variant) != "baseline"


def plan(variant: str, q1: int | None = None, q2: int | None = None) -> Plan:
    """The features and NCE pairs of one CQ objective at precisions q1, q2."""
    check_variant(variant)
    if variant == "baseline":
        a, b = Key(1, None), Key(2, None)
        return Plan((a, b), ((a, b),))
    if q1 is None or q2 is None:
        raise ConfigError(f"cq variant {variant!r} needs two precisions q1, q2")
    if variant == "cq_a":
        f, f_pos = Key(1, q1), Key(2, q2)
        return Plan((f, f_pos), ((f, f_pos),))
    if variant == "cq_quant":
        f, f_pos = Key(0, q1), Key(0, q2)
        return Plan((f, f_pos), ((f, f_pos),))
    f1, f2, f1_pos, f2_pos = Key(1, q1), Key(1, q2), Key(2, q1), Key(2, q2)
    pairs = ((f1, f1_pos), (f2, f2_pos))
    if variant == "cq_c":
        pairs += ((f1, f2), (f1_pos, f2_pos))
    return Plan((f1, f2, f1_pos, f2_pos), pairs)
