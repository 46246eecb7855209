"""StoredSamples: stored (image, label) pairs behind the generator interface."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_generator

import genaug
from genaug.data.hdf5 import HDF5Dataset, export_hdf5
from genaug.generators import StoredSamples, match_classes
from genaug.transforms import SyntheticBatchMix


def coded_bank(per_class: int = 5, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images whose first pixel is 10 * class + index within the class (every image differs)."""
    labels = torch.arange(classes).repeat_interleave(per_class).flip(0)  # stored out of class order
    images = torch.zeros(len(labels), 1, 6, 5, dtype=torch.uint8)
    for c in range(classes):
        rows = (labels == c).nonzero().squeeze(1)
        images[rows, 0, 0, 0] = (10 * c + torch.arange(per_class)).to(torch.uint8)
    return images, labels


def test_samples_come_from_the_stored_images_of_each_label_and_are_seeded():
    images, labels = coded_bank()
    bank = StoredSamples(images, labels)
    assert isinstance(bank, genaug.Generator) and bank.num_classes == 3 and bank.classes == ["0", "1", "2"]
    assert bank.image_shape == (1, 6, 5) and bank.latent_dim == 0 and len(bank) == 15
    want = torch.tensor([2, 0, 1, 1, 2] * 40)
    out = bank.sample(want, generator=torch.Generator().manual_seed(0))
    assert out.shape == (200, 1, 6, 5) and out.dtype == torch.float32
    codes = (out[:, 0, 0, 0] * 255).round().long()
    assert torch.equal(codes // 10, want)  # always an image of the asked class
    assert {int(c) for c in codes[want == 1]} == set(range(10, 15))  # every stored one of it is drawn
    again = bank.sample(want, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert not torch.equal(out, bank.sample(want, generator=torch.Generator().manual_seed(1)))
    assert bank.sample(torch.tensor([], dtype=torch.long)).shape == (0, 1, 6, 5)


def test_float_images_are_stored_as_an_export_would_store_them():
    x = torch.rand(20, 1, 4, 4)
    y = torch.arange(20) % 2
    bank = StoredSamples(x, y, classes=["cat", "dog"])
    assert bank.classes == ["cat", "dog"] and bank.images.dtype == torch.uint8
    got = bank.sample(torch.zeros(50, dtype=torch.long), generator=torch.Generator().manual_seed(0))
    stored = (x[y == 0] * 255).round() / 255
    assert all(any(torch.equal(g, s) for s in stored) for g in got)
    assert StoredSamples(x[:, 0], y).image_shape == (1, 4, 4)  # (N, H, W) is one channel


@pytest.mark.parametrize(("args", "kwargs", "error", "match"), [
    ((torch.rand(4, 1, 2, 2) * 2, torch.arange(4) % 2), {}, ValueError, r"float images must lie in \[0, 1\]"),
    ((torch.zeros(4, 1, 2, 2, dtype=torch.int32), torch.arange(4) % 2), {}, TypeError, "uint8 or float"),
    ((torch.zeros(4, 1, 2, 2), torch.arange(3)), {}, ValueError, r"labels must be \(4,\) integers"),
    ((torch.zeros(4, 1, 2, 2), torch.zeros(4)), {}, ValueError, "integers"),
    ((torch.zeros(0, 1, 2, 2), torch.zeros(0, dtype=torch.long)), {}, ValueError, "non-empty"),
    ((torch.zeros(4, 1, 2, 2), torch.tensor([0, 0, 2, 2])), {}, ValueError, r"class 1 \('1'\) has none"),
    ((torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 2, 1])), {"classes": ["a", "b"]}, ValueError,
     r"labels must be in \[0, 1\], got values in \[0, 2\]"),
    ((torch.zeros(4, 1, 2, 2).numpy(), torch.arange(4)), {}, TypeError, "torch.Tensors"),
])
def test_bad_banks_are_refused(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        StoredSamples(*args, **kwargs)


def test_sampling_refuses_what_stored_images_cannot_do(tmp_path):
    bank = StoredSamples(*coded_bank())
    with pytest.raises(ValueError, match="truncation must be 1.0, got 0.5"):
        bank.sample(torch.tensor([0]), truncation=0.5)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\]"):
        bank.sample(torch.tensor([3]))
    with pytest.raises(TypeError, match="no latent-to-image map"):
        bank.decode(torch.zeros(1, 0), torch.tensor([0]))
    with pytest.raises(ValueError, match="drawing stored images, so no latent reproduces its images"):
        export_hdf5(bank, tmp_path / "again.h5", n=3, with_latents=True, progress=False)
    with pytest.raises(TypeError, match="keep the HDF5 file"):
        bank.save_pretrained(tmp_path / "bank")
    assert not (tmp_path / "bank").exists()


def test_an_export_loads_as_stored_samples_that_mix_into_batches(tmp_path):
    gen = tiny_generator("vae")
    path = export_hdf5(gen, tmp_path / "s.h5", per_class=4, seed=0, progress=False)
    bank = genaug.load_generator(path)
    assert isinstance(bank, StoredSamples) and bank.classes == gen.classes and len(bank) == 40
    assert bank.provenance["stored_samples"] == str(path)
    assert bank.provenance["generator_family"] == HDF5Dataset(path).attrs["generator_family"]
    images, labels = HDF5Dataset(path).tensors()
    stored = {(bytes(img.numpy()), int(y)) for img, y in zip(images, labels, strict=True)}
    mix = SyntheticBatchMix(bank, fraction=0.5, seed=0)
    x, y = torch.rand(16, *gen.image_shape), torch.arange(16) % 10
    mixed_x, mixed_y = mix(x, y)
    assert torch.equal(mixed_y, y)  # balance="batch": the synthetic images take the batch's labels
    swapped = [i for i in range(16) if not torch.equal(mixed_x[i], x[i])]
    assert len(swapped) == 8
    for i in swapped:  # each an exported image of the label it replaced
        assert (bytes((mixed_x[i] * 255).round().to(torch.uint8).numpy()), int(y[i])) in stored
    # The data's class names in another order: drawn by name.
    reordered = match_classes(bank, bank.classes[::-1])
    out = reordered.sample(torch.tensor([0] * 20), generator=torch.Generator().manual_seed(0))
    nines = {bytes(img.numpy()) for img, lab in zip(images, labels, strict=True) if lab == 9}
    assert all(bytes((o * 255).round().to(torch.uint8).numpy()) in nines for o in out)


def test_the_cli_takes_an_export_as_its_generator(tmp_path, capsys):
    from genaug.cli import main

    path = export_hdf5(tiny_generator("vae"), tmp_path / "s.h5", per_class=4, seed=0, progress=False)
    assert main(["sample", "--generator", str(path), "--per-class", "2", "--out", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").stat().st_size > 0
    assert main(["export", "--generator", str(path), "--per-class", "3", "--out", str(tmp_path / "again.h5"),
                 "--no-progress"]) == 0
    images, labels = HDF5Dataset(tmp_path / "again.h5").tensors()
    stored = {(bytes(img.numpy()), int(y)) for img, y in zip(*HDF5Dataset(path).tensors(), strict=True)}
    assert len(labels) == 30 and all((bytes(i.numpy()), int(y)) in stored for i, y in zip(images, labels, strict=True))
    capsys.readouterr()
