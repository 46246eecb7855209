from __future__ import annotations

import pytest
import torch
from conftest import TINY_MODEL

from genaug.data import MNISTSample
from genaug.metrics import accuracy, train_classifier
from genaug.pretrain import backbone_from_model, build_classifier, load_backbone, random_backbone_like
from genaug.train import PRESETS, TrainConfig, Trainer

X = torch.rand(5, 1, 28, 28)


@pytest.mark.parametrize(
    ("family", "features"),
    [("autoencoder", 8 * 7 * 7), ("vae", 8 * 7 * 7), ("cvae", 8 * 7 * 7), ("dcgan", 16), ("cdcgan", 16),
     ("gan", 16), ("began", 8 * 7 * 7)],
)
def test_backbone_from_each_family(family, features, tmp_path):
    cfg = TrainConfig(family=family, model=dict(TINY_MODEL[PRESETS[family].model]), max_steps=2, batch_size=16,
                      progress=False, device="cpu", tensorboard="off", checkpoint_every=0)
    Trainer(cfg, MNISTSample(), out_dir=tmp_path).fit()
    backbone = load_backbone(tmp_path)
    out = backbone(X)
    assert out.shape == (5, features) == (5, backbone.out_features)
    assert torch.isfinite(out).all()


def test_freezing():
    from genaug.models import build_model

    backbone = backbone_from_model(build_model("autoencoder", TINY_MODEL["autoencoder"]))
    head_only = build_classifier(backbone, 10, freeze="all")
    trainable = [n for n, p in head_only.named_parameters() if p.requires_grad]
    assert trainable == ["2.weight", "2.bias"]
    backbone = backbone_from_model(build_model("autoencoder", TINY_MODEL["autoencoder"]))
    first = build_classifier(backbone, 10, freeze=1)
    frozen = [n for n, p in first.named_parameters() if not p.requires_grad]
    assert frozen == ["0.trunk.net.0.weight", "0.trunk.net.0.bias"]
    before = first[0].trunk.net[0].weight.clone()
    train_classifier(torch.utils.data.TensorDataset(X, torch.arange(5)), model=first, epochs=2, batch_size=5,
                     device="cpu")
    assert torch.equal(before, first[0].trunk.net[0].weight)
    with pytest.raises(ValueError, match="freeze must be 'none', 'all' or an int in"):
        build_classifier(backbone, 10, freeze="half")


def test_finetuning_on_a_tiny_set_beats_chance(tmp_path):
    from genaug.models import build_model

    torch.manual_seed(0)
    train = MNISTSample(train=True)
    x, y = train.data[:, None].float() / 255, train.targets
    test = MNISTSample(train=False)
    tx, ty = test.data[:, None].float() / 255, test.targets
    backbone = backbone_from_model(build_model("autoencoder"))
    clf = build_classifier(random_backbone_like(backbone), 10)
    train_classifier(torch.utils.data.TensorDataset(x[:300], y[:300]), model=clf, epochs=5, batch_size=32,
                     device="cpu")
    assert accuracy(clf, torch.utils.data.TensorDataset(tx, ty)) > 0.5  # chance is 0.1


def test_semi_supervised_gan_learns_from_few_labels():
    from torch.utils.data import TensorDataset

    from genaug.data import as_tensors
    from genaug.pretrain import few_label_indices
    from genaug.train.semisupervised import SemiSupervisedConfig, fit_semi_supervised_gan

    x, y = as_tensors(MNISTSample(train=True))
    tx, ty = as_tensors(MNISTSample(train=False))
    idx = few_label_indices(y, 5, seed=0)
    cfg = SemiSupervisedConfig(model={"g_hidden": (64,), "d_hidden": (128, 64)}, epochs=15, batch_size=50,
                               device="cpu", progress=False)
    model = fit_semi_supervised_gan(x, y, idx, config=cfg)
    acc = accuracy(model.discriminator, TensorDataset(tx.float() / 255, ty))
    assert acc > 0.3, acc  # 50 labels in all; chance is 0.1
    fake = model.generator(torch.rand(4, model.config.latent_dim))
    assert fake.shape == (4, 1, 28, 28) and float(fake.min()) >= 0 and float(fake.max()) <= 1


def test_semi_supervised_gan_rejects_bad_input():
    from genaug.train.semisupervised import fit_semi_supervised_gan

    x = torch.zeros(10, 1, 28, 28, dtype=torch.uint8)
    with pytest.raises(ValueError, match="indices"):
        fit_semi_supervised_gan(x, torch.zeros(10, dtype=torch.long), torch.tensor([10]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit_semi_supervised_gan(x.float() * 2 + 2, torch.zeros(10, dtype=torch.long), torch.tensor([0]))
