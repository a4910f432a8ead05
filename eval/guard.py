"""The divergence guard of the evaluation stages: a diverged pretraining is reported, not fatal.

A pretraining run that went non-finite still writes its ``encoder.pt`` and a ``metrics.json``
with ``status: diverged`` (see ``common/engine.py``). Evaluating those weights would give numbers
that look like results, or crash; instead every evaluation of such a checkpoint writes, in its
own output folder, a ``metrics.json`` saying so:

    {"status": "not run (pretraining diverged)", "encoder": ".../encoder.pt",
     "pretraining": {"status": "diverged", "step": 5, "metrics": ".../metrics.json"}}

The report stage reads that status and prints "diverged" in the tables.

Choices where the papers and protocols are silent:
- The pretraining metrics are looked up beside the encoder file (``<run>/metrics.json``); an
  encoder without one (e.g. an external torchvision file) counts as not diverged.
- Only ``status == "diverged"`` stops an evaluation; any other status is evaluated.
"""
from __future__ import annotations

from pathlib import Path

from common.checkpoint import write_json
from common.runs import DIVERGED, METRICS, NOT_RUN_DIVERGED, pretraining_metrics

__all__ = ["NOT_RUN_DIVERGED", "pretraining_diverged", "pretraining_metrics", "write_not_run"]


def pretraining_diverged(encoder: str | Path) -> bool:
    metrics = pretraining_metrics(encoder)
    return metrics is not None and metrics.get("status") == DIVERGED


def write_not_run(out_dir: str | Path, encoder: str | Path, **extra) -> Path:
    """Write `out_dir/metrics.json` recording that `encoder`'s pretraining diverged."""
    pre = pretraining_metrics(encoder) or {}
    metrics = {"status": NOT_RUN_DIVERGED, "encoder": str(encoder),
               "pretraining": {"status": pre.get("status"), "step": pre.get("step"),
                               "metrics": str(Path(encoder).with_name(METRICS))},
               **extra}
    return write_json(metrics, Path(out_dir) / METRICS)
