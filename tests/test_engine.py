"""The training engine: resume, divergence, outputs, and DDP (two gloo processes) equivalence."""
import json
import os
import sys
import time
from pathlib import Path

import pytest
import torch

from common import runs
from common.checkpoint import load_checkpoint, save_checkpoint
from common.engine import TrainConfig, load_encoder, train
from common import runs
from common.runs import CHECKPOINT, ENCODER, METRICS
from common.errors import ConfigError
from common.methods.base import StepOutput
from tests.engine_fixtures import run_timed, tiny_config, tiny_dataset, tiny_simclr

REPO = Path(__file__).resolve().parents[1]


class Crash(RuntimeError):
    pass


def crash_at(step):
    def callback(s, state):
        if s == step:
            raise Crash(f"simulated crash after step {s}")
    return callback


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("accum", [1, 2])
def test_interrupted_run_resumes_to_the_same_weights(tmp_path, accum):
    data = tiny_dataset()  # 64 images, batch 16: 4 steps per epoch (2 with accumulation 2)
    cfg = tiny_config(steps=10, accum_steps=accum)
    whole = tiny_simclr()
    train(whole, data, cfg, tmp_path / "whole")

    broken = tiny_simclr()
    with pytest.raises(Crash):  # dies after step 7; the last checkpoint is step 6 (mid-epoch)
        train(broken, data, cfg, tmp_path / "broken", callbacks=[crash_at(7)])
    assert load_checkpoint(tmp_path / "broken" / CHECKPOINT)["state"]["step"] == 6
    failed = json.loads((tmp_path / "broken" / METRICS).read_text())  # the folder says it failed, and why
    assert failed["status"] == runs.FAILED and "simulated crash after step 7" in failed["reason"]
    assert not (tmp_path / "broken" / ENCODER).exists()
    resumed = tiny_simclr()  # a fresh process would start from fresh weights too
    metrics = train(resumed, data, cfg, tmp_path / "broken")
    assert metrics["status"] == "ok" and metrics["step"] == 10
    assert_same_weights(resumed, whole)


def test_resumed_run_logs_each_step_once_and_counts_every_segments_seconds(tmp_path):
    data, cfg = tiny_dataset(), tiny_config(steps=10, log_every=1)
    slow = lambda step, state: time.sleep(0.3) if step <= 7 else None  # noqa: E731
    with pytest.raises(Crash):  # dies after step 7 (about 2 s); the last checkpoint is step 6
        train(tiny_simclr(), data, cfg, tmp_path, callbacks=[slow, crash_at(7)])
    metrics = train(tiny_simclr(), data, cfg, tmp_path)
    assert metrics["step"] == 10 and metrics["seconds"] >= 6 * 0.3
    curves = list((tmp_path / "dvclive" / "plots" / "metrics").rglob("*.tsv"))
    assert curves
    for tsv in curves:
        steps = [int(float(row.split("\t")[0])) for row in tsv.read_text().splitlines()[1:]]
        assert steps == sorted(set(steps)), f"{tsv.name}: {steps}"
    loss = (tmp_path / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()[1:]
    assert [int(r.split("\t")[0]) for r in loss] == list(range(1, 11))


def test_checkpoint_from_other_settings_is_not_resumed(tmp_path):
    data = tiny_dataset()
    train(tiny_simclr(), data, tiny_config(steps=3), tmp_path)
    with pytest.warns(UserWarning, match="other settings"):
        metrics = train(tiny_simclr(), data, tiny_config(steps=4, lr=0.1), tmp_path)
    assert metrics["step"] == 4


def test_outputs_metrics_provenance_and_curves(tmp_path):
    method = tiny_simclr()
    metrics = train(method, tiny_dataset(), tiny_config(steps=4), tmp_path,
                    params={"lr": 0.3}, encoder_meta={"backbone": "cifar_resnet20", "backbone_kwargs": {"width": 0.25}},
                    run_info={"dataset": "synthetic", "profile": "smoke"})
    on_disk = json.loads((tmp_path / METRICS).read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    assert on_disk["status"] == "ok" and on_disk["step"] == 4
    prov = on_disk["provenance"]
    for key in ("git_commit", "params_hash", "device", "dataset", "profile"):
        assert prov[key]
    assert prov["dataset"] == "synthetic" and prov["profile"] == "smoke"
    curves = json.loads((tmp_path / "dvclive" / "metrics.json").read_text())["train"]
    for key in ("loss", "lr", "images_per_s", "online_acc"):
        assert key in curves
    norms = curves["grad_norm"]
    assert set(norms) == {"total", "backbone", "projector", "online_probe"}
    # total = the method's own parameters (backbone + projector), without the online probe
    assert norms["total"] ** 2 == pytest.approx(norms["backbone"] ** 2 + norms["projector"] ** 2, rel=1e-4)
    encoder = load_encoder(tmp_path / ENCODER, tiny_simclr().backbone)
    assert encoder["backbone"] == "cifar_resnet20" and encoder["norm"] == "cifar10"  # the views' normalization
    for k, v in method.backbone.state_dict().items():
        assert torch.equal(encoder["state_dict"][k], v)
    # the run contract reads the method's components from checkpoint.pt by name, and writes them alike
    for name in ("backbone", "projector"):
        state = runs.method_state(tmp_path, name)
        assert state.keys() == getattr(method, name).state_dict().keys()
        assert all(torch.equal(state[k], v) for k, v in getattr(method, name).state_dict().items())
    assert runs.method_state(tmp_path).keys() == method.state_dict().keys()
    made = runs.method_checkpoint({"projector": method.projector.state_dict()})
    assert runs.method_state_of(made, "projector").keys() == method.projector.state_dict().keys()
    assert runs.method_state_of(made, "backbone") == {} and runs.method_state_of({}, "projector") == {}


@pytest.mark.learning
def test_training_lowers_the_loss(tmp_path):
    losses = []
    train(tiny_simclr(), tiny_dataset(), tiny_config(steps=40, log_every=1), tmp_path,
          callbacks=[lambda s, state: losses.append(state.last_loss)])
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_non_finite_loss_ends_with_status_diverged(tmp_path):
    method = tiny_simclr()
    original = method.training_step
    calls = {"n": 0}

    def step(images, labels, generator):
        out = original(images, labels, generator)
        calls["n"] += 1
        if calls["n"] >= 5:  # the 5th forward, i.e. optimizer step index 4, goes non-finite
            return StepOutput(out.loss * float("nan"), out.features, out.logs)
        return out

    method.training_step = step
    metrics = train(method, tiny_dataset(), tiny_config(steps=10), tmp_path)
    assert metrics["status"] == "diverged" and metrics["step"] == 4
    on_disk = json.loads((tmp_path / METRICS).read_text())
    assert on_disk["status"] == "diverged" and on_disk["step"] == 4
    assert (tmp_path / ENCODER).exists()
    for p in method.parameters():  # the non-finite step was never applied
        assert torch.isfinite(p).all()


def test_bad_settings_are_one_clear_error():
    with pytest.raises(ConfigError, match="exactly one of steps or epochs"):
        TrainConfig(batch_size=8)
    with pytest.raises(ConfigError, match="unknown setting"):
        TrainConfig.from_dict({"steps": 3, "bach_size": 4})
    with pytest.raises(ConfigError, match="train.amp"):
        TrainConfig(steps=3, amp="fp8")
    with pytest.raises(ConfigError, match="accumulation"):
        train(tiny_simclr(), tiny_dataset(), tiny_config(batch_size=15, accum_steps=2), "/tmp/unused")
    with pytest.raises(ConfigError, match="needs at least"):
        train(tiny_simclr(), tiny_dataset(8), tiny_config(batch_size=16), "/tmp/unused")


class PickledCode:
    pass


def test_checkpoints_are_atomic_and_weights_only(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint({"w": torch.ones(2)}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind
    path.write_bytes(path.read_bytes()[:20])  # truncated
    with pytest.raises(ConfigError, match="c.pt"):
        load_checkpoint(path)
    with pytest.raises(ConfigError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"obj": PickledCode()}, path)  # arbitrary pickled objects are refused
    with pytest.raises(ConfigError, match="weights-only"):
        load_checkpoint(path)


def test_unreadable_checkpoints_are_named_without_unsafe_advice(tmp_path):
    save_checkpoint({"w": torch.ones(1000)}, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "random.pt").write_bytes(torch.randint(0, 256, (5000,), dtype=torch.uint8).numpy().tobytes())
    torch.save({"obj": PickledCode()}, tmp_path / "code.pt")
    for name, fragment in (("cut.pt", "truncated or corrupt"), ("random.pt", "not a weights-only torch file"),
                           ("code.pt", "not a weights-only torch file")):
        with pytest.raises(ConfigError) as err:
            load_checkpoint(tmp_path / name)
        text = str(err.value)
        assert fragment in text and name in text and "\n" not in text, text
        assert "weights_only` set to `False`" not in text and "weights_only=False" not in text
        assert "Errno" not in text


def test_a_truncated_checkpoint_in_out_starts_the_run_over_with_a_warning(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    save_checkpoint({"w": torch.ones(1000)}, out / CHECKPOINT)
    (out / CHECKPOINT).write_bytes((out / CHECKPOINT).read_bytes()[:100])
    with pytest.warns(UserWarning, match="starting over"):
        metrics = train(tiny_simclr(), tiny_dataset(), tiny_config(steps=2), out)
    assert metrics["status"] == "ok" and metrics["step"] == 2
    assert load_checkpoint(out / CHECKPOINT)["state"]["step"] == 2


@pytest.mark.ddp
def test_two_gloo_processes_equal_one_process_on_the_global_batch(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--standalone", str(REPO / "tests" / "ddp_engine_run.py"),
           str(tmp_path / "ddp")]
    done = run_timed("torchrun, 2 gloo ranks (engine)", cmd, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    single = tiny_simclr(deterministic_views=True)
    one = train(single, tiny_dataset(), tiny_config(steps=3, sync_bn=True), tmp_path / "single")
    two = json.loads((tmp_path / "ddp" / METRICS).read_text())
    assert two["world_size"] == 2 and two["status"] == "ok"
    assert two["final_loss"] == pytest.approx(one["final_loss"], abs=1e-5)
    rank0 = torch.load(tmp_path / "ddp" / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "ddp" / "rank1.pt", weights_only=True)
    reference = single.state_dict()
    for key, value in reference.items():
        assert torch.equal(rank0[key], rank1[key]), key  # ranks stay in lockstep
        if value.is_floating_point():
            assert torch.allclose(rank0[key], value, atol=1e-5), key
        else:
            assert torch.equal(rank0[key], value), key


def test_a_checkpoint_resumes_onto_the_cpu_whatever_the_run_device(tmp_path):
    """A GPU run resumes from a checkpoint read onto the CPU: RNG states must stay CPU byte tensors
    (a CQ run's precision generator refused a CUDA one when its finished run was started again on
    an H200, bench/gpu.py). On this CPU-only machine, reading onto `cuda` would raise."""
    from types import SimpleNamespace

    from common.engine import _check_resume

    path = tmp_path / CHECKPOINT
    save_checkpoint({"params_hash": "h", "world": 1, "rng": torch.Generator().get_state()}, path)
    rt = SimpleNamespace(device=torch.device("cuda"), main=True, world=1)
    ckpt = _check_resume(path, "h", rt)
    assert ckpt["rng"].device.type == "cpu" and ckpt["rng"].dtype == torch.uint8
    torch.Generator().set_state(ckpt["rng"])


def test_snapshots_are_the_encoder_after_those_epochs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative run folder, as DVC stages pass it
    data = tiny_dataset()  # 64 images, batch 16: 4 steps per epoch
    method, at_step_8 = tiny_simclr(), {}

    def keep(step, state):
        if step == 8:
            at_step_8.update({k: v.clone() for k, v in method.encoder_state_dict().items()})

    cfg = tiny_config(steps=12, snapshot_epochs=[1, 2, 3, 5])
    assert train(method, data, cfg, "run", callbacks=[keep])["status"] == "ok"
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("encoder*.pt"))
    # epoch 3 is encoder.pt, 5 never comes
    assert files == ["run/encoder.pt", "run/snapshots/encoder-e1.pt", "run/snapshots/encoder-e2.pt"]
    snapshot = load_checkpoint(runs.snapshot_path(tmp_path / "run", 2))
    final = load_checkpoint(tmp_path / "run" / ENCODER)
    assert {k: v for k, v in snapshot.items() if k != "state_dict"} == {k: v for k, v in final.items() if k != "state_dict"}
    assert snapshot["state_dict"].keys() == at_step_8.keys()
    assert all(torch.equal(snapshot["state_dict"][k], v) for k, v in at_step_8.items())
    assert not all(torch.equal(final["state_dict"][k], v) for k, v in at_step_8.items())
    with pytest.raises(ConfigError, match="snapshot_epochs"):
        tiny_config(snapshot_epochs=[0])


def test_a_run_that_fails_before_its_first_checkpoint_leaves_the_folder_as_it_was(tmp_path):
    data, cfg = tiny_dataset(), tiny_config(steps=10)
    with pytest.raises(Crash):  # no checkpoint yet: nothing to resume, nothing kept
        train(tiny_simclr(), data, cfg, tmp_path / "new", callbacks=[crash_at(1)])
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "notes.txt").write_text("mine")
    with pytest.raises(Crash):
        train(tiny_simclr(), data, cfg, tmp_path / "old", callbacks=[crash_at(1)])
    assert [p.name for p in (tmp_path / "old").iterdir()] == ["notes.txt"]


def test_a_batch_batchnorm_cannot_train_on_is_refused_before_the_folder_exists(tmp_path):
    with pytest.raises(ConfigError, match="BatchNorm 1 image a step"):
        train(tiny_simclr(), tiny_dataset(), tiny_config(steps=2, batch_size=1), tmp_path / "run")
    assert not (tmp_path / "run").exists()
