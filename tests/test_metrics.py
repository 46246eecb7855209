from __future__ import annotations

import re

import pytest
import torch
from torch.utils.data import TensorDataset

from genaug.data import MNISTSample
from genaug.generators import BaseGenerator
from genaug.metrics import class_coverage, fid, kid, label_fidelity, precision_recall, train_classifier, tstr
from genaug.metrics.quality import evaluate, features

pytest.importorskip("torchmetrics")


@pytest.fixture(scope="module")
def data():
    train, test = MNISTSample(train=True), MNISTSample(train=False)
    return (train.data[:, None].float() / 255, train.targets), (test.data[:, None].float() / 255, test.targets)


@pytest.fixture(scope="module")
def judge(data):
    (x, y), _ = data
    return train_classifier(TensorDataset(x, y), epochs=15, batch_size=50, seed=0, device="cpu")


class RealImages(BaseGenerator):
    """A 'generator' that returns real training images of the requested class."""

    family = "test-real"

    def __init__(self, x, y):
        from genaug.models import VAEConfig

        super().__init__(config=VAEConfig(num_classes=10), classes=[str(i) for i in range(10)],
                         image_shape=(1, 28, 28), latent_dim=1)
        self.x, self.y = x, y

    def sample(self, labels, *, generator=None, truncation=1.0):
        out = []
        for c in labels.tolist():
            idx = (self.y == c).nonzero().squeeze(1)
            out.append(self.x[idx[torch.randint(len(idx), (1,), generator=generator)]])
        return torch.cat(out)


def test_identical_sets_fid_near_zero_shifted_sets_large(data, judge):
    _, (tx, _) = data
    same = fid(judge, tx, tx)
    shifted = fid(judge, tx, (tx * 0.5 + 0.3).clamp(0, 1))
    assert abs(same) < 1e-3 and shifted > 10 * max(same, 1e-2)
    k_same, _ = kid(judge, tx, tx)
    k_shift, _ = kid(judge, tx, torch.flip(tx, dims=[3]))
    assert k_shift > k_same + 1e-3


def test_real_image_generator_has_full_fidelity(data, judge):
    (x, y), (tx, ty) = data
    judged_right = judge(x).argmax(1) == y
    gen = RealImages(x[judged_right], y[judged_right])  # real images the judge knows
    labels = torch.arange(10).repeat_interleave(20)
    images = gen.sample(labels, generator=torch.Generator().manual_seed(0))
    assert label_fidelity(judge, images, labels) == 1.0
    assert class_coverage(judge, images, 10) == 1.0
    assert class_coverage(judge, images[labels == 3], 10) == 0.1


def test_precision_recall_of_a_collapsed_set(data, judge):
    _, (tx, _) = data
    real = features(judge, tx)
    p, r = precision_recall(real, real)
    assert p == 1.0 and r == 1.0
    collapsed = real[:5].repeat(40, 1)
    p2, r2 = precision_recall(real, collapsed)
    assert p2 == 1.0 and r2 < 0.2  # inside the real manifold, but covers little of it


def test_tstr_and_report(data, judge):
    (x, y), (tx, ty) = data
    test = TensorDataset(tx, ty)
    assert tstr(x, y, test, epochs=3) > 0.5  # trained on 1000 real images: well above chance (0.1)
    report = evaluate(RealImages(x, y), judge, (x, y), (tx, ty), per_class=20, tstr_epochs=2)
    assert set(report) >= {"fid", "fid_real_vs_real", "kid", "precision", "recall", "label_fidelity",
                           "class_coverage", "tstr", "trtr"}
    assert report["class_coverage"] == 1.0 and report["label_fidelity"] > 0.9


def test_judge_and_evaluate_cli(tmp_path, capsys):
    import json
    from types import SimpleNamespace

    from helpers import tiny_generator

    from genaug.cli import main

    def run(*args):  # in-process: the CLI's own code, without a Python start-up per command
        returncode = main(list(args))
        captured = capsys.readouterr()
        return SimpleNamespace(returncode=returncode, stdout=captured.out, stderr=captured.err)

    res = run("judge", "train", "--data", "sample", "--epochs", "2", "--out", str(tmp_path / "judge"),
              "--no-progress")
    assert res.returncode == 0, res.stderr[-2000:]
    tiny_generator("vae").save_pretrained(tmp_path / "gen")
    res = run("evaluate", "--generator", str(tmp_path / "gen"), "--judge", str(tmp_path / "judge"),
              "--data", "sample", "--per-class", "10", "--tstr-epochs", "1", "--json", str(tmp_path / "r.json"))
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert 0 <= report["label_fidelity"] <= 1 and report["fid"] > report["fid_real_vs_real"]
    assert report["amp"] == "off"
    assert "tstr" in res.stdout
    tiny_generator("dcgan").save_pretrained(tmp_path / "gen2")
    res = run("evaluate", "--generator", str(tmp_path / "gen"), "--generator", str(tmp_path / "gen2"),
              "--mix-weights", "1,3", "--judge", str(tmp_path / "judge"), "--data", "sample",
              "--per-class", "10", "--tstr-epochs", "1", "--json", str(tmp_path / "mix.json"), "--amp", "bf16")
    assert res.returncode == 0, res.stderr[-2000:]
    mix = json.loads((tmp_path / "mix.json").read_text())
    assert mix["generator"] == f"{tmp_path / 'gen'} + {tmp_path / 'gen2'}" and mix["samples"] == 100
    assert mix["amp"] == "bf16"  # both components sampled under bf16 autocast
    # An unconditional generator: the judge labels its samples, and there is no label fidelity.
    tiny_generator("vae", num_classes=0).save_pretrained(tmp_path / "uncond")
    res = run("evaluate", "--generator", str(tmp_path / "uncond"), "--judge", str(tmp_path / "judge"),
              "--data", "sample", "--per-class", "10", "--tstr-epochs", "1", "--json", str(tmp_path / "u.json"))
    assert res.returncode == 0, res.stderr[-2000:]
    uncond = json.loads((tmp_path / "u.json").read_text())
    assert uncond["conditional"] is False and uncond["label_fidelity"] is None and uncond["samples"] == 100


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--mix-weights", "1"], "--mix-weights needs two or more --generator, got 1"),
        (["--generator", "mnist-cvae", "--mix-weights", "1,x"], "comma-separated numbers, got '1,x'"),
        (["--generator", "mnist-cvae", "--mix-weights", "1,2,3"], r"one number per --generator \(2\), got 3"),
        (["--generator", "mnist-cvae", "--mix-weights", "0,0"], "positive sum"),
    ],
)
def test_mixture_cli_refuses_bad_weights(extra, match, tmp_path, capsys):
    from genaug.cli import main

    assert main(["sample", "--generator", "mnist-cdcgan", *extra, "--out", str(tmp_path / "g.png")]) == 2
    assert re.search(match, capsys.readouterr().err)
    assert not (tmp_path / "g.png").exists()



def test_judge_train_takes_the_classifier_size(tmp_path, capsys):
    # A smaller gate (e.g. for a bundled FilteredGenerator) is a judge with fewer channels.
    from genaug.checkpoint import load_module
    from genaug.cli import main

    assert main(["judge", "train", "--data", "sample", "--epochs", "1", "--width", "8", "--hidden", "16",
                 "--out", str(tmp_path / "small"), "--no-progress"]) == 0
    small, card = load_module(tmp_path / "small")
    assert small.config.channels == (8, 16) and small.config.hidden == 16
    assert card["config"]["hidden"] == 16
    with pytest.raises(SystemExit):
        main(["judge", "train", "--data", "sample", "--hidden", "0", "--out", str(tmp_path / "bad")])
    assert "--hidden" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_evaluate_samples_at_the_requested_truncation(data, judge):
    (x, y), (tx, ty) = data
    seen = []

    class Recording(RealImages):
        def sample(self, labels, *, generator=None, truncation=1.0):
            seen.append(truncation)
            return super().sample(labels, generator=generator, truncation=truncation)

    report = evaluate(Recording(x, y), judge, (x, y), (tx, ty), per_class=10, tstr_epochs=1, truncation=0.5)
    assert seen and set(seen) == {0.5} and report["truncation"] == 0.5


def test_train_classifier_takes_a_sampler_and_a_collate_fn():
    from torch.utils.data import SubsetRandomSampler, TensorDataset, default_collate

    from genaug.metrics import train_classifier

    ds = TensorDataset(torch.rand(40, 1, 28, 28), torch.arange(40) % 10)
    seen = []

    def collate(batch):
        xb, yb = default_collate(batch)
        seen.append(yb)
        return xb, yb

    sampler = SubsetRandomSampler(range(0, 40, 10))  # the four images of class 0
    train_classifier(ds, sampler=sampler, collate_fn=collate, batch_size=2, epochs=1, device="cpu")
    assert len(seen) == 2 and all(bool((yb == 0).all()) for yb in seen)
    with pytest.raises(TypeError, match="sampler must be a torch.utils.data.Sampler, got list"):
        train_classifier(ds, sampler=[0, 1], device="cpu")
    with pytest.raises(TypeError, match="collate_fn must be callable, got int"):
        train_classifier(ds, collate_fn=3, device="cpu")


def test_random_affine_draws_a_transform_per_image_and_keeps_shape():
    from genaug.metrics import random_affine

    x = torch.zeros(4, 3, 20, 24)
    x[:, :, 8:12, 10:14] = 1.0  # the same square in every image
    a = random_affine(x, torch.Generator().manual_seed(0))
    b = random_affine(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.allclose(a[0], a[1])  # each image has its own transform
    # No rotation, shift or scale: the identity.
    same = random_affine(x, torch.Generator().manual_seed(0), degrees=0, shift=0, scale=0)
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    # A pure shift of up to 2 px moves the square's centre by at most 2 px.
    shifted = random_affine(x, torch.Generator().manual_seed(1), degrees=0, scale=0)
    cols = torch.arange(24.0)
    centre = (shifted[:, 0].sum(1) * cols).sum(1) / shifted[:, 0].sum((1, 2))
    assert ((centre - 11.5).abs() <= 2.0 + 1e-4).all() and (centre - 11.5).abs().max() > 0.1
    with pytest.raises(ValueError, match=r"a \(N, C, H, W\) float batch, got \(3, 20, 24\)"):
        random_affine(x[0])
    with pytest.raises(ValueError, match="float batch"):
        random_affine(x.to(torch.uint8))


def test_random_cutout_zeros_one_square_per_image_in_every_channel():
    from genaug.metrics import random_cutout

    x = torch.ones(64, 3, 20, 24)
    a = random_cutout(x, torch.Generator().manual_seed(0), size=6)
    assert a.shape == x.shape and torch.equal(a, random_cutout(x, torch.Generator().manual_seed(0), size=6))
    assert torch.equal(a[:, 0], a[:, 2])  # the same square in every channel of an image
    holes = (a[:, 0] == 0).sum((1, 2))
    assert (holes <= 36).all() and (holes >= 9).all()  # clipped at the border to a quarter at worst
    assert (holes == 36).any()
    rows, cols = (a[:, 0] == 0).any(2), (a[:, 0] == 0).any(1)
    assert torch.equal(rows.sum(1) * cols.sum(1), holes)  # one solid rectangle each
    assert len({tuple(r.nonzero().squeeze(1).tolist()) for r in rows}) > 1  # placed per image
    assert torch.equal(x, torch.ones_like(x))  # the input is left alone
    with pytest.raises(ValueError, match="float batch"):
        random_cutout(x[0])
    with pytest.raises(ValueError, match="size"):
        random_cutout(x, size=0)


def test_strong_augment_is_seeded_and_stronger_than_the_weak_view():
    from genaug.metrics import random_affine, strong_augment

    x = torch.zeros(32, 1, 28, 28)
    x[:, :, 6:22, 12:16] = 1.0
    g = torch.Generator().manual_seed(0)
    a = strong_augment(x, g)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, strong_augment(x, torch.Generator().manual_seed(0)))
    weak = random_affine(x, torch.Generator().manual_seed(0))
    assert (a - x).abs().mean() > (weak - x).abs().mean()
    assert a.sum() < x.sum()  # the cutout removes part of the stroke


def test_train_augmented_classifier_is_seeded_and_checks_its_input():
    from genaug.metrics import train_augmented_classifier

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(64, 1, 16, 16, generator=g) * 255).to(torch.uint8)
    y = torch.arange(64) % 4
    a = train_augmented_classifier(x, y, steps=3, batch_size=16, seed=0)
    b = train_augmented_classifier(x.float() / 255, y, steps=3, batch_size=16, seed=0)
    assert a.config.num_classes == 4 and a.config.image_shape == (1, 16, 16) and not a.training
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)  # uint8 and float images in [0, 1] train alike
    seen = []

    def mix(xb, yb):
        seen.append(xb.shape)
        return xb, yb

    train_augmented_classifier(x, y, steps=2, batch_size=8, weights=torch.ones(64), mix=mix)
    assert seen == [(8, 1, 16, 16)] * 2
    with pytest.raises(ValueError, match=r"labels must be \(64,\) to match the images, got \(63,\)"):
        train_augmented_classifier(x, y[:63], steps=1)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\], got \[0, 3\]"):
        train_augmented_classifier(x, y, steps=1, num_classes=3)
    with pytest.raises(ValueError, match=r"weights must be \(64,\)"):
        train_augmented_classifier(x, y, steps=1, weights=torch.ones(3))
    with pytest.raises(ValueError, match="steps"):
        train_augmented_classifier(x, y, steps=0)
