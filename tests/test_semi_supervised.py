"""Conditional generators from a few labels and many unlabelled images (labels_per_class)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_train import _assert_equal, _cli, _state, tiny_config

import genaug
from genaug.data import MNISTSample
from genaug.train import TrainConfig, Trainer
from genaug.train.recipes.ssgan import SemiSupervisedConfig, few_labels, pseudo_label


@pytest.fixture(scope="module")
def sample():
    return MNISTSample(train=True)


def semi_config(**kw) -> TrainConfig:
    return tiny_config("cvae", labels_per_class=5, labeller_epochs=1, **kw)


def test_few_labels_is_seeded_and_takes_k_of_every_class():
    y = torch.arange(10).repeat(20)
    a, b, c = few_labels(y, 3, seed=1), few_labels(y, 3, seed=1), few_labels(y, 3, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.bincount(y[a]), torch.full((10,), 3))


def test_few_labels_refuses_a_class_with_fewer_images():
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    with pytest.raises(ValueError, match=r"labels_per_class=3 needs that many images of every class; class 1 has 2"):
        few_labels(y, 3)


def test_pseudo_label_keeps_the_given_labels_and_is_deterministic(sample):
    x, y = genaug.data.as_tensors(sample)
    idx = few_labels(y, 5, seed=0)
    cfg = SemiSupervisedConfig(epochs=1, batch_size=50, seed=0, device="cpu", progress=False)
    a, b = pseudo_label(x, y, idx, config=cfg), pseudo_label(x, y, idx, config=cfg)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.confidence, b.confidence)
    assert torch.equal(a.labels[idx], y[idx]) and bool((a.confidence[idx] == 1).all())
    assert a.labels.shape == y.shape and bool(((a.confidence > 0) & (a.confidence <= 1)).all())
    kept = a.keep(0.9)
    assert set(idx.tolist()) <= set(kept.tolist())
    assert bool((a.confidence[kept] >= 0.9).all() | torch.isin(kept, idx).all())


def test_labels_per_class_trains_and_records_the_labelled_images(sample, tmp_path):
    result = Trainer(semi_config(max_steps=4), sample, out_dir=tmp_path).fit()
    assert result.step == 4 and all(math.isfinite(v) for row in result.history for v in row.values())
    semi = genaug.load_generator(tmp_path).provenance["semi_supervised"]
    x, y = genaug.data.as_tensors(sample)
    assert semi["labelled_indices"] == few_labels(y, 5, seed=0).tolist()
    assert (semi["labels_per_class"], semi["label_seed"], semi["labeller"]) == (5, 0, "ssgan")
    assert semi["images"] == semi["images_kept"] == 1000
    assert 0.0 <= semi["withheld_label_agreement"] <= 1.0
    other = Trainer(semi_config(max_steps=1, seed=3), sample, out_dir=tmp_path / "other")
    assert other.semi_supervised["labelled_indices"] != semi["labelled_indices"]


def test_min_confidence_leaves_out_unsure_images(sample, tmp_path):
    trainer = Trainer(semi_config(max_steps=1, min_confidence=0.999), sample, out_dir=tmp_path)
    pl = trainer.pseudo_labels
    expected = int(((pl.confidence >= 0.999)).sum())
    assert len(trainer.batches) == trainer.semi_supervised["images_kept"] == expected < 1000
    assert len(trainer.batches) >= 50


def test_labels_per_class_resumes_exactly(sample, tmp_path, deterministic):
    straight = Trainer(semi_config(max_steps=8), sample, out_dir=tmp_path / "a")
    straight.fit()
    Trainer(semi_config(max_steps=4), sample, out_dir=tmp_path / "b").fit()
    assert (tmp_path / "b" / "pseudo_labels.safetensors").is_file()
    resumed = Trainer(semi_config(max_steps=8), sample, out_dir=tmp_path / "b", resume=True)
    assert resumed.step == 4
    resumed.fit()
    _assert_equal(_state(straight), _state(resumed))
    assert torch.equal(straight.pseudo_labels.labels, resumed.pseudo_labels.labels)


def test_labeller_student_relabels_with_the_cnn_trained_on_the_gan_labels(sample, tmp_path, monkeypatch):
    import genaug.train.trainer as trainer_module

    students = []
    real_train_student = trainer_module.train_student

    def spy(images, pseudo, **kw):
        students.append((pseudo.labels.clone(), kw))
        students.append(real_train_student(images, pseudo, **kw))
        return students[-1]

    monkeypatch.setattr(trainer_module, "train_student", spy)
    trainer = Trainer(semi_config(max_steps=1, labeller_student_steps=3), sample, out_dir=tmp_path)
    gan_labels, kw = students[0]
    assert kw["steps"] == 3 and kw["seed"] == 0
    x, y = genaug.data.as_tensors(sample)
    pl = trainer.pseudo_labels
    # The final labels are the student's argmax, the labelled images keeping their own.
    with torch.no_grad():
        expected = students[1](x.float() / 255).argmax(1)
    expected[pl.labelled] = y[pl.labelled]
    assert torch.equal(pl.labels, expected)
    semi = trainer.semi_supervised
    assert semi["labeller"] == "ssgan+student" and semi["labeller_student_steps"] == 3
    with pytest.raises(ValueError, match="labeller_student_steps=5 relabels the images of a labels_per_class run"):
        TrainConfig(family="cvae", labeller_student_steps=5)
    with pytest.raises(ValueError, match="labeller_student_steps"):
        TrainConfig(family="cvae", labels_per_class=3, labeller_student_steps=-1)
    with pytest.raises(ValueError, match="labeller_student_rounds=2 trains that many student CNNs"):
        TrainConfig(family="cvae", labels_per_class=3, labeller_student_rounds=2)
    rounds = Trainer(semi_config(max_steps=1, labeller_student_steps=3, labeller_student_rounds=2), sample,
                     out_dir=tmp_path / "rounds")
    assert students[-2][1]["rounds"] == 2
    assert rounds.semi_supervised["labeller_student_rounds"] == 2


def test_labels_per_class_is_for_conditional_families_only():
    with pytest.raises(ValueError, match=r"labels_per_class applies to conditional families .*'cvae'.*got "
                                         r"labels_per_class=10"):
        TrainConfig(family="dcgan", labels_per_class=10)
    with pytest.raises(ValueError, match="min_confidence"):
        TrainConfig(family="cvae", min_confidence=1.5)


def test_cli_labels_per_class(tmp_path):
    out = tmp_path / "run"
    r = _cli("train", "cvae", "--data", "sample", "--max-steps", "2", "--batch-size", "16", "--no-progress",
             "--labels-per-class", "3", "--labeller-epochs", "1", "--labeller-student-steps", "2",
             "--labeller-student-rounds", "2", "--seed", "4",
             "--device", "cpu",
             "--set", "tensorboard=off", "--out", str(out))
    assert r.returncode == 0, r.stderr
    card = json.loads((out / "config.json").read_text())
    semi = card["provenance"]["semi_supervised"]
    assert semi["label_seed"] == 4 and len(semi["labelled_indices"]) == 30
    assert card["provenance"]["train_config"]["labels_per_class"] == 3
    assert semi["labeller"] == "ssgan+student" and semi["labeller_student_steps"] == 2
    assert semi["labeller_student_rounds"] == 2
    bad = _cli("train", "dcgan", "--data", "sample", "--labels-per-class", "3", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "labels_per_class applies to conditional families" in bad.stderr
    assert not (tmp_path / "x").exists()


def test_data_dependent_init_gives_zero_mean_unit_variance_layers(sample):
    from genaug.models.ssgan import SemiSupervisedGAN, SSGANConfig

    x = genaug.data.as_tensors(sample)[0][:200].float() / 255
    d = SemiSupervisedGAN(SSGANConfig(input_noise=0.0, hidden_noise=0.0, d_hidden=(64, 32))).discriminator
    d.init_from_data(x)
    h = x.flatten(1)
    for module in (*d.trunk, *d.head):
        if isinstance(module, torch.nn.Linear):
            out = module(h)
            assert torch.allclose(out.mean(0), torch.zeros(out.shape[1]), atol=1e-4)
            assert torch.allclose(out.std(0, unbiased=False), torch.ones(out.shape[1]), atol=1e-3)
        h = module(h) if not isinstance(module, torch.nn.Flatten) else h


def test_the_returned_discriminator_is_averaged_and_hidden_scales_stay_as_initialised(sample):
    from genaug.train.recipes.ssgan import fit_semi_supervised_gan

    x, y = genaug.data.as_tensors(sample)
    idx = few_labels(y, 5, seed=0)
    base = dict(epochs=1, batch_size=50, seed=0, device="cpu", progress=False, init_images=100,
                model={"d_hidden": (64, 32), "g_hidden": (32,)})
    last = fit_semi_supervised_gan(x, y, idx, config=SemiSupervisedConfig(ema_decay=0.0, **base))
    avg = fit_semi_supervised_gan(x, y, idx, config=SemiSupervisedConfig(ema_decay=0.99, **base))
    # Averaging changes what is returned, not how the networks train.
    _assert_equal(last.generator.state_dict(), avg.generator.state_dict())
    scales = [(a.parametrizations.weight.original0, b.parametrizations.weight.original0)
              for a, b in zip(last.discriminator.scaled_layers(), avg.discriminator.scaled_layers(), strict=True)]
    for hidden_last, hidden_avg in scales[:-1]:  # fixed after the init, so their average is the same
        assert torch.equal(hidden_last, hidden_avg)
    assert not torch.equal(*scales[-1])  # the head's scale trains
    assert all(p.requires_grad for p in avg.discriminator.parameters())


def test_semi_supervised_config_names_a_bad_field():
    with pytest.raises(ValueError, match="ema_decay"):
        SemiSupervisedConfig(ema_decay=1.0)
    with pytest.raises(ValueError, match="init_images"):
        SemiSupervisedConfig(init_images=-1)
    with pytest.raises(ValueError, match="init_images must be 0 .off. or at least 2"):
        SemiSupervisedConfig(init_images=1)


def test_label_with_keeps_the_given_labels_and_takes_the_classifier_argmax_elsewhere(sample):
    from genaug.train.recipes.ssgan import label_with

    x, y = genaug.data.as_tensors(sample)
    x, y = x[:60], y[:60]
    torch.manual_seed(0)
    clf = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(784, 10))
    clf.train()
    idx = torch.tensor([0, 5, 7])
    pseudo = label_with(clf, x, y, idx, batch_size=16)
    assert clf.training  # its mode is restored
    clf.eval()
    with torch.no_grad():
        probs = torch.softmax(clf(x.float() / 255), 1)
    expected = probs.argmax(1)
    expected[idx] = y[idx]
    assert torch.equal(pseudo.labels, expected)
    torch.testing.assert_close(pseudo.confidence[idx], torch.ones(3))
    rest = torch.ones(60, dtype=torch.bool)
    rest[idx] = False
    torch.testing.assert_close(pseudo.confidence[rest], probs.max(1).values[rest])  # eval mode: no dropout
    assert torch.equal(pseudo.labelled, idx)


def test_train_student_learns_the_pseudo_labels_it_keeps_and_is_seeded(sample):
    from genaug.models import Classifier
    from genaug.train.recipes.ssgan import PseudoLabels, train_student

    x, y = genaug.data.as_tensors(sample)
    x, y = x[:200], y[:200]
    conf = torch.linspace(0, 1, 200)
    pseudo = PseudoLabels(y.clone(), conf, torch.arange(0, 200, 20))
    a = train_student(x, pseudo, steps=3, seed=1)
    b = train_student(x, pseudo, steps=3, seed=1)
    c = train_student(x, pseudo, steps=3, seed=2)
    assert isinstance(a, Classifier) and not a.training

    def same(m, n):
        return all(torch.equal(p, q) for p, q in zip(m.state_dict().values(), n.state_dict().values(), strict=True))

    assert same(a, b) and not same(a, c)
    # Leaving out unsure images changes what it trains on.
    assert not same(train_student(x, pseudo, steps=3, seed=1, min_confidence=0.5), a)
    with pytest.raises(ValueError, match="pseudo labels 200 images, but images has 10"):
        train_student(x[:10], pseudo, steps=3)


def test_train_student_rounds_train_each_cnn_on_the_labels_of_the_one_before(sample):
    from genaug.train.recipes.ssgan import PseudoLabels, label_with, train_student

    x, y = genaug.data.as_tensors(sample)
    x, y = x[:200], y[:200]
    noisy = torch.where(torch.arange(200) % 3 == 0, (y + 1) % 10, y)  # a third of them wrong
    pseudo = PseudoLabels(noisy, torch.ones(200), torch.arange(0, 200, 20))
    first = train_student(x, pseudo, steps=4, seed=1)
    relabelled = label_with(first, x, pseudo.labels, pseudo.labelled)
    expected = train_student(x, relabelled, steps=4, seed=1)
    got = train_student(x, pseudo, steps=4, seed=1, rounds=2)
    _assert_equal(expected.state_dict(), got.state_dict())
    assert not torch.equal(relabelled.labels, pseudo.labels)  # the second CNN saw other labels
    with pytest.raises(ValueError, match="rounds"):
        train_student(x, pseudo, steps=4, rounds=0)


def test_train_student_fits_consistent_labels(sample):
    from genaug.metrics import accuracy
    from genaug.train.recipes.ssgan import PseudoLabels, train_student

    x, y = genaug.data.as_tensors(sample)
    pseudo = PseudoLabels(y.clone(), torch.ones(len(y)), torch.arange(10))
    student = train_student(x, pseudo, steps=20, seed=0)
    train_acc = accuracy(student, torch.utils.data.TensorDataset(x.float() / 255, y))
    assert train_acc > 0.5, train_acc  # 10 classes: chance is 0.1


def test_train_consistency_learns_from_the_unlabelled_images_and_is_seeded(sample):
    from genaug.models import Classifier, ClassifierConfig
    from genaug.train.recipes.ssgan import train_consistency

    x, y = genaug.data.as_tensors(sample)
    x, y = x[:200], y[:200]
    labelled = torch.arange(0, 200, 20)
    torch.manual_seed(0)
    start = Classifier(ClassifierConfig(image_shape=(1, 28, 28), num_classes=10))
    before = {k: v.clone() for k, v in start.state_dict().items()}

    def run(images, **kw):
        return train_consistency(start, images, y, labelled, steps=3, batch_size=8, threshold=0.0, seed=1, **kw)

    a, b = run(x), run(x)
    assert isinstance(a, Classifier) and not a.training
    _assert_equal(a.state_dict(), b.state_dict())
    _assert_equal(start.state_dict(), before)  # the model passed in is copied
    # The images without labels teach it through the consistency term only.
    noise = x.clone()
    noise[torch.ones(200, dtype=torch.bool).index_fill(0, labelled, False)] = 0
    _assert_equal(run(x, weight=0.0).state_dict(), run(noise, weight=0.0).state_dict())
    changed = run(noise).state_dict()
    assert any(not torch.equal(changed[k], v) for k, v in a.state_dict().items())
    # No prediction reaches a threshold above 1: the same as no consistency term.
    _assert_equal(train_consistency(start, x, y, labelled, steps=3, batch_size=8, threshold=1.0, seed=1)
                  .state_dict(), run(x, weight=0.0).state_dict())
    assert any(not torch.equal(before[k], v) for k, v in a.state_dict().items())
    # Distribution alignment changes which labels the unlabelled images get.
    aligned = run(x, align=True).state_dict()
    _assert_equal(aligned, run(x, align=True).state_dict())
    assert any(not torch.equal(aligned[k], v) for k, v in a.state_dict().items())
    with pytest.raises(ValueError, match="labels has 10 entries, but images has 200"):
        train_consistency(start, x, y[:10], labelled, steps=1)
    with pytest.raises(ValueError, match="threshold"):
        train_consistency(start, x, y, labelled, steps=1, threshold=1.5)
    with pytest.raises(ValueError, match="labelled must be a non-empty"):
        train_consistency(start, x, y, torch.tensor([], dtype=torch.long), steps=1)


def _interrupt_after(monkeypatch, steps: int) -> None:
    """Send SIGTERM to this process once the semi-supervised GAN's bar reaches ``steps``."""
    import signal

    from genaug.train.recipes import ssgan

    class Bar(ssgan.tqdm):
        done = 0  # a disabled bar does not count

        def update(self, n=1):
            out = super().update(n)
            Bar.done += n
            if Bar.done == steps:
                signal.raise_signal(signal.SIGTERM)
            return out

    monkeypatch.setattr(ssgan, "tqdm", Bar)


@pytest.mark.parametrize("extra", [{}, {"ema_decay": 0.99, "init_images": 100}], ids=["plain", "ema+init"])
def test_semi_supervised_gan_resumes_exactly_after_sigterm(sample, tmp_path, monkeypatch, deterministic, extra):
    from genaug.train import TrainingInterrupted
    from genaug.train.recipes.ssgan import fit_semi_supervised_gan

    x, y = genaug.data.as_tensors(sample)
    idx = few_labels(y, 5, seed=0)
    cfg = SemiSupervisedConfig(epochs=2, batch_size=50, seed=3, device="cpu", progress=False,
                               model={"d_hidden": (64, 32), "g_hidden": (32,)}, **extra)
    whole = fit_semi_supervised_gan(x, y, idx, config=cfg)
    ck = tmp_path / "ssgan.pt"
    per_epoch = len(x) // 50
    with monkeypatch.context() as m:
        _interrupt_after(m, per_epoch + 3)  # mid-epoch: the epoch's order comes from the checkpoint
        with pytest.raises(TrainingInterrupted, match=f"step {per_epoch + 3} of {2 * per_epoch}") as err:
            fit_semi_supervised_gan(x, y, idx, config=cfg, checkpoint=ck, checkpoint_every=1000)
    assert err.value.step == per_epoch + 3 and err.value.checkpoint == ck
    resumed = fit_semi_supervised_gan(x, y, idx, config=cfg, checkpoint=ck)
    _assert_equal(whole.state_dict(), resumed.state_dict())
    assert torch.load(ck, weights_only=True)["step"] == 2 * per_epoch
    # A finished checkpoint gives the same model again without training.
    again = fit_semi_supervised_gan(x, y, idx, config=cfg, checkpoint=ck)
    _assert_equal(whole.state_dict(), again.state_dict())


def test_semi_supervised_gan_checkpoint_is_written_every_n_steps_and_changes_nothing(sample, tmp_path,
                                                                                     monkeypatch):
    from genaug.train.recipes import ssgan

    x, y = genaug.data.as_tensors(sample)
    idx = few_labels(y, 5, seed=0)
    cfg = SemiSupervisedConfig(epochs=1, batch_size=50, seed=0, device="cpu", progress=False,
                               model={"d_hidden": (32,), "g_hidden": (32,)})
    steps = []
    real_save = ssgan.save_training_checkpoint
    monkeypatch.setattr(ssgan, "save_training_checkpoint", lambda state, path: (steps.append(state["step"]),
                                                                                 real_save(state, path)))
    plain = ssgan.fit_semi_supervised_gan(x, y, idx, config=cfg)
    saved = ssgan.fit_semi_supervised_gan(x, y, idx, config=cfg, checkpoint=tmp_path / "c.pt", checkpoint_every=3)
    per_epoch = len(x) // 50
    assert steps == [*range(3, per_epoch + 1, 3), *([per_epoch] if per_epoch % 3 else [])]
    _assert_equal(plain.state_dict(), saved.state_dict())


def test_semi_supervised_gan_refuses_a_checkpoint_of_another_run(sample, tmp_path):
    from genaug.checkpoint import CheckpointError
    from genaug.train.recipes.ssgan import fit_semi_supervised_gan

    x, y = genaug.data.as_tensors(sample)
    idx = few_labels(y, 5, seed=0)
    base = dict(epochs=1, batch_size=50, device="cpu", progress=False, model={"d_hidden": (32,), "g_hidden": (32,)})
    ck = tmp_path / "c.pt"
    fit_semi_supervised_gan(x, y, idx, config=SemiSupervisedConfig(seed=0, **base), checkpoint=ck)
    with pytest.raises(ValueError, match=r"different settings for \['seed'\]"):
        fit_semi_supervised_gan(x, y, idx, config=SemiSupervisedConfig(seed=1, **base), checkpoint=ck)
    with pytest.raises(ValueError, match="other data"):
        fit_semi_supervised_gan(x, y, few_labels(y, 5, seed=1), config=SemiSupervisedConfig(seed=0, **base),
                                checkpoint=ck)
    flipped = x.clone()
    flipped[0, 0, 0, 0] ^= 1
    with pytest.raises(ValueError, match="other data"):
        fit_semi_supervised_gan(flipped, y, idx, config=SemiSupervisedConfig(seed=0, **base), checkpoint=ck)
    # progress and device may change.
    fit_semi_supervised_gan(x, y, idx, config=SemiSupervisedConfig(seed=0, **{**base, "progress": True}),
                            checkpoint=ck)
    other = tmp_path / "other.pt"
    torch.save({"step": 3}, other)
    with pytest.raises(CheckpointError, match="expected a semi-supervised GAN checkpoint"):
        fit_semi_supervised_gan(x, y, idx, config=SemiSupervisedConfig(seed=0, **base), checkpoint=other)
    with pytest.raises(ValueError, match="checkpoint_every"):
        fit_semi_supervised_gan(x, y, idx, config=SemiSupervisedConfig(seed=0, **base), checkpoint=ck,
                                checkpoint_every=-1)


def test_labels_per_class_resumes_exactly_when_stopped_while_labelling(sample, tmp_path, monkeypatch, deterministic):
    from genaug.train import TrainingInterrupted
    from genaug.train.trainer import LABELLER_CHECKPOINT_NAME

    straight = Trainer(semi_config(max_steps=4), sample, out_dir=tmp_path / "a")
    straight.fit()
    out = tmp_path / "b"
    with monkeypatch.context() as m:
        _interrupt_after(m, 4)
        with pytest.raises(TrainingInterrupted):
            Trainer(semi_config(max_steps=4), sample, out_dir=out)
    assert (out / LABELLER_CHECKPOINT_NAME).is_file()
    with pytest.raises(FileExistsError, match=LABELLER_CHECKPOINT_NAME):
        Trainer(semi_config(max_steps=4), sample, out_dir=out)
    resumed = Trainer(semi_config(max_steps=4), sample, out_dir=out, resume=True)
    assert resumed.step == 0
    assert torch.equal(straight.pseudo_labels.labels, resumed.pseudo_labels.labels)
    resumed.fit()
    _assert_equal(_state(straight), _state(resumed))
    assert not (out / LABELLER_CHECKPOINT_NAME).exists()  # the saved labels replace it


def test_cli_pretrain_ssgan_resumes_after_sigterm(tmp_path, monkeypatch, capsys):
    from genaug.checkpoint import load_module
    from genaug.cli import SSGAN_CHECKPOINT, main

    args = ["pretrain", "ssgan", "--data", "sample", "--epochs", "1", "--labels-per-class", "3", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    out = tmp_path / "b"
    with monkeypatch.context() as m:
        _interrupt_after(m, 4)
        assert main([*args, "--out", str(out)]) == 0
    assert "interrupted at step 4 of 10" in capsys.readouterr().out
    assert (out / SSGAN_CHECKPOINT).is_file() and not (out / "classifier").exists()
    assert main([*args, "--out", str(out)]) == 2  # refused: the folder holds the stopped run
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--resume", str(out)]) == 0
    (want, want_card), (got, card) = load_module(tmp_path / "a" / "classifier"), load_module(out / "classifier")
    _assert_equal(want.state_dict(), got.state_dict())
    assert card["provenance"]["test_accuracy"] == want_card["provenance"]["test_accuracy"]
    assert main([*args, "--resume", str(out)]) == 0  # a complete run: the same GAN again, no training
    _assert_equal(want.state_dict(), load_module(out / "classifier")[0].state_dict())
    assert main([*args, "--resume", str(tmp_path / "nothing")]) == 2
    assert f"no {SSGAN_CHECKPOINT} to resume from" in capsys.readouterr().err
    assert main([*args, "--resume", str(out), "--overwrite"]) == 2
