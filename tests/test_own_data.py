"""The user's own labelled images: any dataset type in Python, folders and .npz from the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_generator
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset, TensorDataset
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

import genaug
from genaug.cli import main
from genaug.data import MixedDataset, MNISTSample
from genaug.data.labelled import dataset_classes, dataset_labels, labelled_images
from genaug.data.sources import open_image, resolve_data, resolve_splits, resolve_test_data
from genaug.models.layers import stride2_stages
from genaug.transforms import SyntheticBatchMix, SyntheticReplace

TINY_CVAE = ["--set", 'model={"latent_dim": 4, "channels": [4, 8]}', "--set", 'tensorboard="off"']


def write_folder(root, images, labels, classes):
    """An ImageFolder layout: root/<class name>/<index>.png."""
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / classes[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        arr = img.permute(1, 2, 0).numpy()
        Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(folder / f"{i:05d}.png")
    return root


@pytest.fixture(scope="module")
def digit_folders(tmp_path_factory):
    """The bundled sample as class folders: 30 train and 10 test images per class."""
    root = tmp_path_factory.mktemp("digits")
    out = {}
    for split, per in (("train", 30), ("test", 10)):
        ds = MNISTSample(train=split == "train")
        idx = torch.cat([(ds.targets == c).nonzero().squeeze(1)[:per] for c in range(10)])
        write_folder(root / split, ds.data[idx][:, None], ds.targets[idx], [str(c) for c in range(10)])
        out[split] = root / split
    return out


@pytest.fixture(scope="module")
def rgb_folder(tmp_path_factory):
    """Random RGB 32x32 images in three named classes."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8, generator=g)
    return write_folder(tmp_path_factory.mktemp("rgb"), x, torch.arange(48) % 3, ["cat", "dog", "owl"])


def test_labels_are_read_cheaply_from_every_kind_of_dataset(digit_folders):
    sample = MNISTSample()
    sub = Subset(sample, [0, 150, 999])
    expected = sample.targets[[0, 150, 999]].tolist()
    assert dataset_labels(sub).tolist() == expected
    assert dataset_labels(ConcatDataset([sub, sub])).tolist() == expected * 2
    folder = ImageFolder(str(digit_folders["train"]))
    assert dataset_labels(folder).tolist() == [s[1] for s in folder.samples]
    assert dataset_labels(TensorDataset(torch.zeros(3, 1, 8, 8), torch.tensor([2, 0, 1]))).tolist() == [2, 0, 1]

    class OnePass(Dataset):  # tells nothing: read in one pass
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.zeros(1, 8, 8), torch.tensor(3 - i)

    assert dataset_labels(OnePass()).tolist() == [3, 2, 1, 0]
    assert dataset_classes(sub) == [str(c) for c in range(10)]
    assert dataset_classes(ConcatDataset([sub, folder])) == [str(c) for c in range(10)]


def test_cifar_style_arrays_and_list_targets_are_read_without_a_pass():
    class CifarLike(Dataset):
        classes = ["a", "b"]

        def __init__(self):
            self.data = np.arange(4 * 8 * 8 * 3, dtype=np.uint8).reshape(4, 8, 8, 3)
            self.targets = [0, 1, 1, 0]
            self.transform = None

        def __len__(self):
            return 4

        def __getitem__(self, i):
            raise AssertionError("the images sit in .data: no item is read")

    x, y = labelled_images(CifarLike())
    assert x.shape == (4, 3, 8, 8) and y.tolist() == [0, 1, 1, 0]
    assert torch.equal(x[1], torch.from_numpy(CifarLike().data[1]).permute(2, 0, 1))


def test_images_of_different_sizes_name_one_file_of_each(tmp_path):
    for name, size in (("a", 28), ("b", 32)):
        (tmp_path / name).mkdir()
        Image.new("L", (size, size)).save(tmp_path / name / "x.png")
    with pytest.raises(ValueError, match=r"one size, got .*a/x.png is 28x28, .*b/x.png is 32x32; pass --resize"):
        resolve_data(str(tmp_path))
    # A dataset built without that check is named the same way when its images are read.
    with pytest.raises(ValueError, match=r"2 shapes .*a/x.png is \(1, 28, 28\), .*b/x.png is \(1, 32, 32\)"):
        labelled_images(ImageFolder(str(tmp_path), loader=open_image))


def test_folder_and_npz_refusals(tmp_path):
    (tmp_path / "one" / "only").mkdir(parents=True)
    Image.new("L", (8, 8)).save(tmp_path / "one" / "only" / "x.png")
    with pytest.raises(ValueError, match=r"expected two or more class folders, got \['only'\]"):
        resolve_data(str(tmp_path / "one"))
    (tmp_path / "one" / "empty").mkdir()
    with pytest.raises(ValueError, match=r"class folder\(s\) \['empty'\] hold no files"):
        resolve_data(str(tmp_path / "one"))
    np.savez(tmp_path / "x.npz", pictures=np.zeros((2, 8, 8), np.uint8), labels=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"expected arrays 'images' and 'labels', got \['labels', 'pictures'\]"):
        resolve_data(str(tmp_path / "x.npz"))
    np.savez(tmp_path / "neg.npz", images=np.zeros((2, 8, 8), np.uint8), labels=np.array([0, -1]))
    with pytest.raises(ValueError, match="expected labels >= 0, got minimum -1"):
        resolve_data(str(tmp_path / "neg.npz"))
    Image.new("RGBA", (8, 8)).save(tmp_path / "rgba.png")
    with pytest.raises(ValueError, match="rgba.png: expected a grayscale \\(L\\) or RGB image, got mode 'RGBA'"):
        open_image(str(tmp_path / "rgba.png"))


def test_npz_round_trip_with_class_names(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=x, labels=np.arange(12) % 2, classes=np.array(["no", "yes"]))
    data, description = resolve_data(str(tmp_path / "d.npz"))
    images, labels = labelled_images(data)
    assert images.shape == (12, 3, 16, 16) and torch.equal(images[5], torch.from_numpy(x[5]).permute(2, 0, 1))
    assert dataset_classes(data) == ["no", "yes"] and description == "npz file d.npz"


def test_val_split_is_seeded_and_disjoint():
    train, held, _ = resolve_splits("sample", val_split=0.25, seed=3)
    again, held_again, _ = resolve_splits("sample", val_split=0.25, seed=3)
    assert len(train) == 750 and len(held) == 250 and held.indices == held_again.indices
    assert not set(train.indices) & set(held.indices)
    with pytest.raises(ValueError, match="has no test split of its own; give --test-data"):
        resolve_test_data("my_digits.npz")


def _items(ds, workers):
    loader = DataLoader(ds, batch_size=16, num_workers=workers, shuffle=False)
    return [(x.clone(), y.clone()) for x, y in loader]


@pytest.mark.parametrize("kind", ["subset", "concat", "folder"])
def test_mixed_dataset_over_the_datasets_users_hold(kind, digit_folders):
    gen = tiny_generator("vae")
    to_tensor = v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])
    if kind == "folder":
        real = ImageFolder(str(digit_folders["train"]), loader=open_image, transform=to_tensor)
    else:
        sample = MNISTSample(transform=to_tensor)
        real = Subset(sample, list(range(0, 1000, 3)))
        if kind == "concat":
            real = ConcatDataset([real, Subset(sample, [1, 2])])
    mixed = MixedDataset(real, gen, synthetic_fraction=0.5, output="pil", transform=to_tensor, seed=0)
    assert len(mixed) == 2 * len(real)
    assert torch.equal(mixed.targets[: len(real)], dataset_labels(real))
    a, b = _items(mixed, 0), _items(mixed, 2)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b, strict=True))


def test_mixed_dataset_matches_another_class_order_by_name(tmp_path):
    # ImageFolder sorts names: folders 0..10 come as 0, 1, 10, 2, ...
    gen = tiny_generator("vae", num_classes=11)
    names = [str(c) for c in range(11)]
    write_folder(tmp_path, torch.zeros(11, 1, 28, 28, dtype=torch.uint8), torch.arange(11), names)
    real = ImageFolder(str(tmp_path), loader=open_image)
    assert real.classes[:4] == ["0", "1", "10", "2"]
    mixed = MixedDataset(real, gen, balance="match", output="tensor")
    assert mixed.classes == real.classes
    # Every synthetic item labelled i is the generator's class named real.classes[i].
    syn = mixed.synthetic
    for j in range(len(syn)):
        image, label = syn[j]
        expected = gen.decode(_latent(syn, j), torch.tensor([int(real.classes[label])]))[0]
        assert torch.allclose(image, expected, atol=1e-6), (j, label)


def _latent(syn, j):
    from genaug.data.synthetic import item_generator

    return torch.randn(syn.model.latent_dim, generator=item_generator(syn.seed, j))[None] * syn.truncation


def test_class_names_are_matched_or_refused_with_both_lists():
    gen = tiny_generator("vae", num_classes=3)
    gen.classes = ["cat", "dog", "owl"]
    real = TensorDataset(torch.zeros(6, 1, 28, 28), torch.tensor([0, 1, 2, 0, 1, 2]))
    real.classes = ["owl", "cat", "dog"]
    mixed = MixedDataset(real, gen, balance="match")
    assert mixed.model.config.order == (2, 0, 1) and mixed.classes == ["owl", "cat", "dog"]
    # A subset of the generator's classes works too; a class it lacks is refused, naming both lists.
    real.classes = ["owl", "emu", "dog"]
    with pytest.raises(ValueError, match=r"real has classes \['owl', 'emu', 'dog'\] but the generator has "
                                         r"\['cat', 'dog', 'owl'\]; \['emu'\] is not"):
        MixedDataset(real, gen, balance="match")
    two = TensorDataset(torch.zeros(2, 1, 28, 28), torch.tensor([0, 1]))
    two.classes = ["owl", "dog"]
    assert MixedDataset(two, gen, balance="match").synthetic.model.config.order == (2, 1)
    # The per-batch and per-sample transforms take the batch's class names the same way.
    mix = SyntheticBatchMix(gen, fraction=1.0, classes=["owl", "cat", "dog"], seed=0)
    ref = SyntheticBatchMix(gen, fraction=1.0, seed=0)
    x = torch.zeros(3, 1, 28, 28)
    assert torch.equal(mix(x, torch.tensor([0, 1, 2]))[0], ref(x, torch.tensor([2, 0, 1]))[0])
    assert SyntheticReplace(gen, classes=["dog", "owl"]).model.classes == ["dog", "owl"]
    with pytest.raises(TypeError, match="classes must be a list of class names"):
        SyntheticReplace(gen, classes="owl,dog")


def test_a_test_folder_with_classes_in_another_order_keeps_the_meaning_of_labels(tmp_path):
    x = torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1).expand(6, 1, 16, 16).contiguous()
    np.savez(tmp_path / "train.npz", images=x.numpy(), labels=np.array([0, 1, 2, 0, 1, 2]),
             classes=np.array(["cat", "dog", "owl"]))
    np.savez(tmp_path / "test.npz", images=x[:4].numpy(), labels=np.array([0, 1, 0, 1]),
             classes=np.array(["owl", "cat"]))
    train, test, _ = resolve_splits(str(tmp_path / "train.npz"), test=str(tmp_path / "test.npz"))
    assert dataset_classes(test) == ["cat", "dog", "owl"]
    assert dataset_labels(test).tolist() == [2, 0, 2, 0] and [test[i][1] for i in range(4)] == [2, 0, 2, 0]
    np.savez(tmp_path / "other.npz", images=x[:2].numpy(), labels=np.array([0, 1]), classes=np.array(["emu", "cat"]))
    with pytest.raises(ValueError, match=r"--test-data has classes \['emu', 'cat'\] but the training data "
                                         r"\['cat', 'dog', 'owl'\]"):
        resolve_splits(str(tmp_path / "train.npz"), test=str(tmp_path / "other.npz"))


def test_train_sample_export_judge_evaluate_on_a_folder(digit_folders, tmp_path, capsys):
    train, test = str(digit_folders["train"]), str(digit_folders["test"])
    run = tmp_path / "run"

    def ok(*argv):
        rc = main([str(a) for a in argv])
        assert rc == 0, capsys.readouterr().err
        return capsys.readouterr().out

    ok("train", "cvae", "--data", train, "--max-steps", 3, "--batch-size", 16, "--out", run, "--no-progress",
       *TINY_CVAE)
    assert genaug.load_generator(run).provenance["training_data"] == "image folder train"
    ok("sample", "--generator", run, "--per-class", 2, "--out", tmp_path / "grid.png")
    ok("export", "--generator", run, "--per-class", 3, "--out", tmp_path / "s.h5", "--no-progress")
    ok("judge", "train", "--data", train, "--test-data", test, "--epochs", 1, "--out", tmp_path / "judge",
       "--no-progress")
    out = ok("evaluate", "--generator", run, "--judge", tmp_path / "judge", "--data", train, "--test-data", test,
             "--per-class", 5, "--tstr-epochs", 1)
    assert "label_fidelity" in out
    # Without a test set of its own, a folder asks for one instead of measuring on MNIST.
    assert main(["evaluate", "--generator", str(run), "--judge", str(tmp_path / "judge"), "--data", train]) == 2
    assert "has no test split of its own" in capsys.readouterr().err


@pytest.mark.parametrize("family", ["cvae", "cdcgan"])
def test_train_on_an_rgb_folder_and_an_npz(family, rgb_folder, tmp_path, capsys):
    rc = main(["train", family, "--data", str(rgb_folder), "--max-steps", "2", "--batch-size", "8",
               "--out", str(tmp_path / "a"), "--no-progress", "--set", 'tensorboard="off"'])
    assert rc == 0, capsys.readouterr().err
    gen = genaug.load_generator(tmp_path / "a")
    assert gen.image_shape == (3, 32, 32) and gen.classes == ["cat", "dog", "owl"]
    x, y = labelled_images(resolve_data(str(rgb_folder))[0])
    np.savez(tmp_path / "d.npz", images=x.permute(0, 2, 3, 1).numpy(), labels=y.numpy())
    rc = main(["train", family, "--data", str(tmp_path / "d.npz"), "--max-steps", "2", "--batch-size", "8",
               "--out", str(tmp_path / "b"), "--no-progress", "--set", 'tensorboard="off"'])
    assert rc == 0, capsys.readouterr().err
    assert genaug.load_generator(tmp_path / "b").image_shape == (3, 32, 32)


def test_mixed_sizes_and_modes_are_refused_early_unless_resized(tmp_path, capsys):
    for c, (mode, size) in enumerate([("L", 28), ("RGB", 32)]):
        (tmp_path / "d" / f"c{c}").mkdir(parents=True)
        for i in range(8):
            Image.new(mode, (size, size), color=40 * i if mode == "L" else (40 * i, 0, 0)).save(
                tmp_path / "d" / f"c{c}" / f"{i}.png")
    folder = str(tmp_path / "d")
    with pytest.raises(ValueError, match=r"expected images of one mode, L or RGB, got .*c0/0.png is L, .*is RGB"):
        resolve_data(folder)
    with pytest.raises(ValueError, match=r"expected images of one size, got .*is 28x28, .*is 32x32; pass --resize"):
        resolve_data(folder, mode="L")
    data, _ = resolve_data(folder, mode="L", resize=(16, 20))
    x, y = labelled_images(data)
    assert x.shape == (16, 1, 16, 20) and y.tolist() == [0] * 8 + [1] * 8
    rc = main(["train", "cvae", "--data", folder, "--mode", "RGB", "--resize", "16", "--max-steps", "1",
               "--batch-size", "8", "--out", str(tmp_path / "run"), "--no-progress", "--set", 'tensorboard="off"'])
    assert rc == 0, capsys.readouterr().err
    assert genaug.load_generator(tmp_path / "run").image_shape == (3, 16, 16)


def test_bad_files_are_named_or_skipped_and_listed_in_the_card(digit_folders, tmp_path, capsys):
    import shutil

    folder = tmp_path / "d"
    shutil.copytree(digit_folders["test"], folder)
    (folder / "3" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"3/broken.png: not a readable image \(1 such file"):
        resolve_data(str(folder))
    data, description = resolve_data(str(folder), skip_bad_files=True)
    assert len(data) == 100 and description.endswith("1 unreadable files left out")
    rc = main(["train", "cvae", "--data", str(folder), "--skip-bad-files", "--max-steps", "1", "--batch-size", "8",
               "--out", str(tmp_path / "run"), "--no-progress", *TINY_CVAE])
    assert rc == 0, capsys.readouterr().err
    assert genaug.load_generator(tmp_path / "run").provenance["skipped_files"] == [str(folder / "3" / "broken.png")]


def test_class_names_from_the_command_line(tmp_path, capsys):
    x = np.zeros((8, 8, 8), np.uint8)
    np.savez(tmp_path / "d.npz", images=x, labels=np.arange(8) % 2)
    data, _ = resolve_data(str(tmp_path / "d.npz"), classes=["left", "right"])
    assert dataset_classes(data) == ["left", "right"]
    with pytest.raises(ValueError, match=r"--classes expects 2 distinct names"):
        resolve_data(str(tmp_path / "d.npz"), classes=["a", "b", "c"])


def test_torchvision_datasets_by_name_never_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--data torchvision:KMNIST: not found under .*pass --download"):
        resolve_data("torchvision:KMNIST", tmp_path)
    with pytest.raises(ValueError, match="torchvision.datasets has no dataset class 'Nope'"):
        resolve_data("torchvision:Nope", tmp_path)
    assert not any(tmp_path.iterdir()), "nothing was downloaded or created"


@pytest.mark.full_mnist
def test_torchvision_mnist_by_name_is_mnist(mnist_root):
    data, description = resolve_data("torchvision:MNIST", mnist_root)
    assert len(data) == 60000 and description.startswith("torchvision MNIST train")


SHAPES = [(1, 16, 16), (3, 32, 32), (1, 64, 64), (3, 28, 36)]


@pytest.fixture(scope="module")
def shaped_npz(tmp_path_factory):
    """An .npz of random images per shape, four classes."""
    root = tmp_path_factory.mktemp("shapes")
    out = {}
    for c, h, w in SHAPES:
        x = np.random.default_rng(c * h * w).integers(0, 256, (32, h, w, c), dtype=np.uint8)
        path = root / f"{c}x{h}x{w}.npz"
        np.savez(path, images=x, labels=np.arange(32) % 4)
        out[(c, h, w)] = path
    return out


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_every_family_trains_on_each_shape_from_the_api_and_the_cli(shape, shaped_npz, tmp_path, capsys):
    from genaug.train import TrainConfig, Trainer, list_training_families

    data, _ = resolve_data(str(shaped_npz[shape]))
    for family in list_training_families():
        # One grid image per class (8 unconditional): the diffusion families' grids at 64x64 are slow on a CPU.
        cfg = TrainConfig(family=family, max_steps=1, batch_size=8, progress=False, device="cpu",
                          tensorboard="off", grid_per_class=1)
        trainer = Trainer(cfg, data, out_dir=tmp_path / "api" / family)
        trainer.fit()
        assert trainer.batches.image_shape == shape, family
        # Convolutional families get one stride-2 stage per halving: 2 at 16x16 and 28x36, 3 at 32, 4 at 64.
        stages = {f: len(v) for f, v in trainer.model_cfg.to_dict().items() if f.endswith("channels")}
        mlp = cfg.preset.model == "gan"
        assert set(stages.values()) == (set() if mlp else {stride2_stages(shape)}), (family, stages)
        rc = main(["train", family, "--data", str(shaped_npz[shape]), "--max-steps", "1", "--batch-size", "8",
                   "--out", str(tmp_path / "cli" / family), "--no-progress", "--set", 'tensorboard="off"',
                   "--set", "grid_per_class=1"])
        assert rc == 0, (family, capsys.readouterr().err)
        if family != "autoencoder":
            gen = genaug.load_generator(tmp_path / "cli" / family)
            assert gen.image_shape == shape
            labels = torch.arange(4) if gen.num_classes else torch.full((4,), -1)
            assert gen.sample(labels).shape == (4, *shape)


def test_evaluate_pairs_generator_judge_and_data_by_class_name(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name, classes in (("a", ["cat", "dog", "owl"]), ("b", ["owl", "cat", "dog"])):
        np.savez(tmp_path / f"{name}.npz", images=rng.integers(0, 256, (48, 16, 16), dtype=np.uint8),
                 labels=np.arange(48) % 3, classes=np.array(classes))

    def run(*argv):
        rc = main([str(a) for a in argv])
        return rc, capsys.readouterr()

    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert run("train", "cvae", "--data", a, "--max-steps", 2, "--batch-size", 16, "--out", tmp_path / "gen",
               "--no-progress", *TINY_CVAE)[0] == 0
    for name, data in (("judge-a", a), ("judge-b", b)):
        assert run("judge", "train", "--data", data, "--val-split", 0.25, "--epochs", 1, "--out",
                   tmp_path / name, "--no-progress")[0] == 0
    assert genaug.checkpoint.load_module(tmp_path / "judge-b")[1]["provenance"]["classes"] == ["owl", "cat", "dog"]
    # Data in another class order than the generator's: the generator is matched to it by name.
    rc, out = run("evaluate", "--generator", tmp_path / "gen", "--judge", tmp_path / "judge-b", "--data", b,
                  "--val-split", 0.25, "--per-class", 4, "--tstr-epochs", 1)
    assert rc == 0, out.err
    # A judge whose outputs mean other classes than the data's labels is refused.
    rc, out = run("evaluate", "--generator", tmp_path / "gen", "--judge", tmp_path / "judge-a", "--data", b,
                  "--val-split", 0.25, "--per-class", 4)
    assert rc == 2 and "was trained on classes ['cat', 'dog', 'owl'], but --data" in out.err


def test_a_shape_a_family_cannot_take_is_refused_from_the_cli_with_the_resize_that_fits(tmp_path, capsys):
    np.savez(tmp_path / "x.npz", images=np.zeros((16, 30, 30), np.uint8), labels=np.arange(16) % 2)
    rc = main(["train", "cdcgan", "--data", str(tmp_path / "x.npz"), "--out", str(tmp_path / "run"),
               "--max-steps", "1", "--batch-size", "8"])
    err = capsys.readouterr().err
    assert rc == 2 and "got (1, 30, 30)" in err and "--resize 32,32" in err and "(3, 64, 64)" in err
    assert not (tmp_path / "run").exists()
    # With the suggested --resize it trains.
    assert main(["train", "cdcgan", "--data", str(tmp_path / "x.npz"), "--out", str(tmp_path / "run"),
                 "--max-steps", "1", "--batch-size", "8", "--resize", "32,32", "--no-progress",
                 "--set", 'tensorboard="off"']) == 0
    assert genaug.load_generator(tmp_path / "run").image_shape == (1, 32, 32)
