"""The kept teacher (study/kept_teacher.py): a weights digest that names the network, not the file,
and a restore that refuses whatever does not match it and leaves the machine's teacher as it was."""
import hashlib

import pytest
import torch

from common import runs
from common.errors import ConfigError
from study import kept_teacher as K


def _teacher_run(folder, weight_scale=1.0):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    state = {k: v * weight_scale if v.is_floating_point() else v for k, v in net.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    runs.write_encoder(folder / runs.ENCODER, {"backbone": "resnet18", "backbone_kwargs": {}}, state)
    torch.save({"model": state, "optimizer": {}}, folder / runs.CHECKPOINT)
    (folder / runs.METRICS).write_text('{"loss": 1.0}\n')
    return state


def test_the_weights_digest_names_the_weights_whatever_bytes_the_file_has(tmp_path):
    state = _teacher_run(tmp_path / "a")
    again = tmp_path / "b" / runs.ENCODER
    (tmp_path / "b").mkdir()
    runs.write_encoder(again, {"backbone": "resnet18", "backbone_kwargs": {}, "note": "other meta"}, state)
    assert K.weights_digest(tmp_path / "a" / runs.ENCODER) == K.weights_digest(again)
    # one ulp in one weight is another network
    nudged = dict(state)
    first = next(k for k, v in state.items() if v.is_floating_point())
    flat = nudged[first].clone().flatten()
    flat[0] = torch.nextafter(flat[0], torch.tensor(float("inf")))
    nudged[first] = flat.view_as(state[first])
    runs.write_encoder(again, {"backbone": "resnet18", "backbone_kwargs": {}}, nudged)
    assert K.weights_digest(tmp_path / "a" / runs.ENCODER) != K.weights_digest(again)


def test_keep_then_restore_copies_the_run_byte_for_byte_and_refuses_what_does_not_match(tmp_path):
    machine, kept, fresh = tmp_path / "machine", tmp_path / "kept", tmp_path / "fresh" / "s0"
    _teacher_run(machine)
    digest = K.weights_digest(machine / runs.ENCODER)
    with pytest.raises(ConfigError, match="expected"):
        K.keep("0" * 64, machine, kept)
    assert not kept.exists()
    assert K.keep(digest.upper(), machine, kept) == digest
    assert (kept / K.DIGEST).read_text().strip() == digest

    assert K.restore(kept, fresh) == digest
    for name in K.FILES:
        assert hashlib.sha256((fresh / name).read_bytes()).digest() == hashlib.sha256((machine / name).read_bytes()).digest()
    assert K.restore(kept, fresh) == digest  # already there: nothing to do

    other = tmp_path / "other" / "s0"
    _teacher_run(other, weight_scale=2.0)
    before = (other / runs.ENCODER).read_bytes()
    with pytest.raises(ConfigError, match="another teacher"):
        K.restore(kept, other)
    assert (other / runs.ENCODER).read_bytes() == before

    _teacher_run(kept, weight_scale=3.0)  # the kept encoder no longer matches its digest
    target = tmp_path / "new" / "s0"
    with pytest.raises(ConfigError, match="weights digest"):
        K.restore(kept, target)
    assert not target.exists()


def test_restore_without_a_kept_teacher_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(ConfigError, match="no kept teacher"):
        K.restore(tmp_path / "nothing", tmp_path / "t")
