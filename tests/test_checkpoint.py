from __future__ import annotations

import json
import pickle

import pytest
import torch
from helpers import tiny_generator
from safetensors.torch import load_file, save_file

import genaug
from genaug.checkpoint import CheckpointError, load_training_checkpoint, save_training_checkpoint


@pytest.fixture
def saved(tmp_path):
    folder = tmp_path / "g"
    tiny_generator("dcgan").save_pretrained(folder)
    return folder


def _rewrite_weights(folder, change):
    state = load_file(str(folder / "model.safetensors"))
    change(state)
    save_file(state, str(folder / "model.safetensors"))
    card = json.loads((folder / "config.json").read_text())
    card.pop("weights_sha256")
    (folder / "config.json").write_text(json.dumps(card))


def test_card_describes_the_generator(saved):
    card = json.loads((saved / "config.json").read_text())
    assert card["family"] == "dcgan"
    assert card["image_shape"] == [1, 28, 28]
    assert card["value_range"] == [0.0, 1.0]
    assert card["classes"] == [str(i) for i in range(10)]
    assert card["config"]["g_dense"] == 32
    assert {"genaug_version", "torch_version", "created"} <= set(card["provenance"])


def test_file_pair_layout(tmp_path, saved):
    (saved / "model.safetensors").rename(tmp_path / "pair.safetensors")
    (saved / "config.json").rename(tmp_path / "pair.json")
    assert genaug.load_generator(tmp_path / "pair.safetensors").family == "dcgan"


def test_truncated_file(saved):
    w = saved / "model.safetensors"
    w.write_bytes(w.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"model.safetensors: sha256 does not match"):
        genaug.load_generator(saved)
    card = json.loads((saved / "config.json").read_text())
    card.pop("weights_sha256")
    (saved / "config.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="truncated or corrupt safetensors"):
        genaug.load_generator(saved)


def test_corrupt_bytes(saved):
    w = saved / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-100:] = b"\x00" * 100
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        genaug.load_generator(saved)


def test_missing_and_unexpected_keys_are_listed(saved):
    def change(state):
        del state["net.fc.0.weight"]
        state["net.extra"] = torch.zeros(1)

    _rewrite_weights(saved, change)
    with pytest.raises(CheckpointError) as info:
        genaug.load_generator(saved)
    msg = str(info.value)
    assert "missing keys ['net.fc.0.weight']" in msg and "unexpected keys ['net.extra']" in msg


def test_shape_mismatch_is_listed(saved):
    _rewrite_weights(saved, lambda s: s.__setitem__("net.fc.0.bias", torch.zeros(5)))
    with pytest.raises(CheckpointError, match=r"net.fc.0.bias: expected \(32,\), got \(5,\)"):
        genaug.load_generator(saved)


def test_non_finite_weights(saved):
    def change(state):
        state["net.fc.0.bias"][3] = float("nan")

    _rewrite_weights(saved, change)
    with pytest.raises(CheckpointError, match=r"non-finite values .* \['net.fc.0.bias'\]"):
        genaug.load_generator(saved)


def test_unknown_family(saved):
    card = json.loads((saved / "config.json").read_text())
    card["family"] = "normalizing-flow"
    (saved / "config.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="unknown generator family 'normalizing-flow'"):
        genaug.load_generator(saved)


def test_bad_json_and_missing_files(saved):
    (saved / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        genaug.load_generator(saved)
    (saved / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config file is missing"):
        genaug.load_generator(saved)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", ["model.safetensors", "evil.pt", "evil.pkl"])
def test_pickle_is_refused_and_never_executed(tmp_path, saved, name):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(str(marker)))
    if name == "model.safetensors":
        (saved / name).write_bytes(payload)
        target = saved
    else:
        target = tmp_path / name
        target.write_bytes(payload)
    with pytest.raises(CheckpointError, match="pickle"):
        genaug.load_generator(target)
    assert not marker.exists()


def test_torch_save_archive_is_refused(tmp_path):
    path = tmp_path / "model.bin"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="pickle"):
        genaug.load_generator(path)


def test_training_checkpoint_loads_weights_only(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_training_checkpoint({"step": 3, "w": torch.ones(2)}, path)
    assert load_training_checkpoint(path)["step"] == 3
    marker = tmp_path / "pwned"
    path.write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(CheckpointError, match="cannot load training checkpoint"):
        load_training_checkpoint(path)
    assert not marker.exists()


def test_registry_refuses_duplicates_and_loads_by_name(saved):
    name = "test-registry-dcgan"
    genaug.register_generator(name, saved)
    assert name in genaug.list_generators()
    assert genaug.load_generator(name).family == "dcgan"
    with pytest.raises(ValueError, match="already registered"):
        genaug.register_generator(name, saved)
    with pytest.raises(ValueError, match="already registered"):
        genaug.register_family("vae", lambda card: None)
    with pytest.raises(FileNotFoundError, match="no generator named 'nope'"):
        genaug.load_generator("nope")


@pytest.mark.parametrize("family", ["diffusion", "dcgan"])
def test_half_precision_weights_load_back_as_the_rounded_model(tmp_path, family):
    gen = tiny_generator(family).eval()
    gen.save_pretrained(tmp_path / "full")
    gen.save_pretrained(tmp_path / "half", dtype=torch.float16)
    stored = load_file(str(tmp_path / "half" / "model.safetensors"))
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    assert (tmp_path / "half" / "model.safetensors").stat().st_size < 0.6 * (
        tmp_path / "full" / "model.safetensors").stat().st_size
    loaded = genaug.load_generator(tmp_path / "half")
    own = gen.state_dict()
    for key, value in loaded.state_dict().items():
        assert value.dtype == own[key].dtype  # cast back to the model's dtype
        if value.is_floating_point():
            torch.testing.assert_close(value, own[key].half().float(), rtol=0, atol=0)
    rounded = tiny_generator(family).eval()
    rounded.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in own.items()})
    labels = torch.arange(10)
    a = loaded.sample(labels, generator=torch.Generator().manual_seed(3))
    b = rounded.sample(labels, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)


def test_half_precision_refuses_weights_out_of_its_range(tmp_path):
    gen = tiny_generator("dcgan")
    with torch.no_grad():
        next(p for p in gen.parameters() if p.is_floating_point()).view(-1)[0] = 1e6
    with pytest.raises(ValueError, match="exceed the range of torch.float16"):
        gen.save_pretrained(tmp_path / "half", dtype=torch.float16)
    assert not (tmp_path / "half" / "model.safetensors").exists()
    with pytest.raises(ValueError, match="floating-point torch.dtype"):
        gen.save_pretrained(tmp_path / "int", dtype=torch.int8)
