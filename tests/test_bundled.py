"""The pretrained MNIST generators and judge that ship inside the package."""

from __future__ import annotations

import json

import pytest
import torch

import genaug
from genaug.checkpoint import load_module
from genaug.data import MNISTSample, as_tensors
from genaug.metrics import accuracy
from genaug.metrics.quality import label_fidelity
from genaug.registry import BUNDLED_DIR, bundled_path

GENERATORS = ["mnist-cvae", "mnist-cdcgan", "mnist-cddpm", "mnist-cddpm-gated"]


def test_bundled_weights_fit_the_size_budget():
    total = sum(p.stat().st_size for p in BUNDLED_DIR.glob("*/*.safetensors"))
    assert total <= 15_000_000, f"bundled safetensors take {total / 1e6:.1f} MB, over 15 MB"


@pytest.mark.parametrize("name", GENERATORS)
def test_bundled_generator_loads_and_samples(name):
    assert name in genaug.list_generators()
    gen = genaug.load_generator(name)
    assert gen.num_classes == 10 and gen.image_shape == (1, 28, 28)
    labels = torch.arange(10).repeat_interleave(3)
    a = gen.sample(labels, generator=torch.Generator().manual_seed(1))
    b = gen.sample(labels, generator=torch.Generator().manual_seed(1))
    assert a.shape == (30, 1, 28, 28) and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b)
    assert not torch.equal(a[0], a[1])  # different noise, different images


@pytest.mark.parametrize("name", GENERATORS)
def test_bundled_card_records_command_ema_and_measured_numbers(name):
    card = json.loads((bundled_path(name) / "config.json").read_text())
    prov = card["provenance"]
    assert prov["command"].startswith("genaug train ") and "--data mnist" in prov["command"]
    assert prov["ema"] is True
    measured = prov["evaluation"]
    assert measured["command"].startswith("genaug evaluate --generator " + name)
    for key in ("fid", "fid_real_vs_real", "label_fidelity", "class_coverage", "tstr", "trtr"):
        assert isinstance(measured[key], float)


def test_bundled_judge_classifies_real_digits():
    judge, card = load_module(bundled_path("mnist-judge"))
    x, y = as_tensors(MNISTSample(train=False))
    from torch.utils.data import TensorDataset

    assert accuracy(judge, TensorDataset(x.float() / 255, y)) >= 0.97
    assert card["provenance"]["test_accuracy"] >= 0.99


@pytest.mark.parametrize("name", GENERATORS)
def test_bundled_samples_are_their_class(name):
    # The judge (trained on real MNIST only) recognises the intended class of most samples.
    judge, _ = load_module(bundled_path("mnist-judge"))
    gen = genaug.load_generator(name)
    labels = torch.arange(10).repeat_interleave(20)
    images = gen.sample(labels, generator=torch.Generator().manual_seed(0))
    assert label_fidelity(judge, images, labels) >= 0.95


def test_bundled_gated_cddpm_samples_without_guidance_behind_a_gate_that_is_not_the_judge():
    # The gated generator holds its own U-Net (a longer-trained one than mnist-cddpm's) and its gate;
    # the judge that measures fidelity is another network.
    gen = genaug.load_generator("mnist-cddpm-gated")
    base = gen.base.network.config
    assert base.guidance == 0.0 and gen.config.min_confidence >= 0.5
    assert base.sample_steps == 40
    cddpm = genaug.load_generator("mnist-cddpm")
    assert any(not torch.equal(a.float(), b.float()) for a, b in
               zip(gen.base.network.state_dict().values(), cddpm.network.state_dict().values(), strict=True))
    judge, _ = load_module(bundled_path("mnist-judge"))
    assert gen.judge.config.hidden != judge.config.hidden
