"""Adding an evaluation suite is one module on the evaluation core and its section in the profile:
a suite written here (nearest class mean on frozen features) runs through `eval.pipeline` over a
checkpoint, writes its record through the core, and lands in the suite's DVC summary, with no
other code touched (README "Adding a suite")."""
import json
import sys

import torch
import torch.nn.functional as F
import yaml

from eval import pipeline
from eval.core.data import DataSpec
from eval.core.extraction import FeatureExtractor
from tests.engine_fixtures import write_encoder

SUITE = '''"""Nearest class mean: each test image takes the class whose mean training feature is the most
cosine-similar (a toy protocol)."""
import argparse
import time

import torch
import torch.nn.functional as F

from common.config import cli_main
from eval.core.cli import add_data_args, add_extractor_args, eval_process, extractor_from_args, finish, spec_from_args
from eval.core.records import evaluation_record, int_labels, sizes, topk_accuracy

HEADLINE = "top1"


def class_means(x, y, num_classes):
    return F.normalize(torch.stack([x[y == c].mean(0) for c in range(num_classes)]), dim=1)


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m centroid_suite")
    add_extractor_args(parser)
    add_data_args(parser)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    with eval_process(args):
        started, extractor = time.time(), extractor_from_args(args)
        train_spec, test_spec = spec_from_args(args, "train"), spec_from_args(args, "test")
        train, test = extractor.features(train_spec), extractor.features(test_spec)
        num_classes = int(train_spec.build().num_classes)
        means = class_means(train.features, int_labels(train.targets, "centroid"), num_classes)
        scores = F.normalize(test.features, dim=1) @ means.t()
        measured = {**topk_accuracy(scores, int_labels(test.targets, "centroid")),
                    **sizes(num_classes, train.features.shape[0], test.features)}
        metrics = evaluation_record("centroid", measured, extractor.encoder_path, extractor.sha256,
                                    train_spec, test_spec, started)
        finish(args, metrics, extractor.device, "centroid_suite")
    return 0
'''

DATA = {"num_images": 64, "image_size": 16}


def test_a_suite_on_the_core_runs_through_the_pipeline(tmp_path, monkeypatch):
    (tmp_path / "centroid_suite.py").write_text(SUITE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    encoder = tmp_path / "runs" / "cq" / "simclr-baseline-cifar_resnet20" / "s0" / "encoder.pt"
    encoder.parent.mkdir(parents=True)
    write_encoder(encoder)
    params = {"seeds": [0], "cq": {"methods": ["simclr"], "variants": [], "backbones": ["cifar_resnet20"]},
              "eval": {"suites": {"centroid": {"cli": "centroid_suite", "checkpoints": ["cq"],
                                               "args": {"dataset": "synthetic", "options": DATA}}}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    try:
        assert pipeline.main(["--suite", "centroid", "--params", "params.yaml"]) == 0
    finally:
        sys.modules.pop("centroid_suite", None)

    metrics = json.loads((tmp_path / "runs/eval/centroid/cq/simclr-baseline-cifar_resnet20/s0/metrics.json").read_text())
    fx = FeatureExtractor(encoder)
    train, test = (fx.features(DataSpec("synthetic", None, split, DATA)) for split in ("train", "test"))
    means = F.normalize(torch.stack([train.features[train.targets == c].mean(0) for c in range(10)]), dim=1)
    expected = ((F.normalize(test.features, dim=1) @ means.t()).argmax(1) == test.targets).float().mean().item()
    assert metrics["top1"] == expected
    assert metrics["suite"] == "centroid" and metrics["num_test"] == test.features.shape[0]
    assert metrics["encoder_sha256"] == fx.sha256 and metrics["provenance"]["stage"] == "centroid_suite"
    summary = json.loads((tmp_path / "runs/eval/centroid.json").read_text())
    assert summary == {"cq": {"simclr-baseline-cifar_resnet20": {"s0": {"top1": expected}}}}
