from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO

# Examples read full MNIST from $GENAUG_DATA when it is there; these tests use the bundled sample.
SAMPLE_ONLY = {k: v for k, v in os.environ.items() if k != "GENAUG_DATA"}


def test_train_generator_example_runs(tmp_path):
    out = tmp_path / "ex"
    res = subprocess.run(
        [sys.executable, str(REPO / "examples" / "train_generator.py"), "--max-steps", "5", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert (out / "example_grid.png").is_file() and (out / "config.json").is_file()


def test_drop_into_dataloader_example_runs():
    res = subprocess.run(
        [sys.executable, str(REPO / "examples" / "drop_into_dataloader.py"), "--steps", "5"],
        capture_output=True, text=True, timeout=600, env=SAMPLE_ONLY,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "accuracy real + synthetic:" in res.stdout


def test_balance_imbalanced_example_runs():
    res = subprocess.run(
        [sys.executable, str(REPO / "examples" / "balance_imbalanced.py"), "--keep", "0.05", "--gen-steps", "10",
         "--epochs", "1"],
        capture_output=True, text=True, timeout=600, env=SAMPLE_ONLY,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    for row in ("real only", "resampled", "resampled + synthetic", "topped up"):
        assert f"\n{row} " in res.stdout, res.stdout
    assert "synthetic images added per class when topping up" in res.stdout


def test_pretrain_classifier_example_runs():
    res = subprocess.run(
        [sys.executable, str(REPO / "examples" / "pretrain_classifier.py"), "--max-steps", "10",
         "--finetune-steps", "5"],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "random init" in res.stdout and "autoencoder pretrained" in res.stdout


def test_pretrain_cli(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "genaug.cli", "pretrain", "vae", "--epochs", "1", "--labels-per-class", "5",
         "--finetune-steps", "5", "--out", str(tmp_path), "--no-progress"],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "test accuracy" in res.stdout and "50 labels" in res.stdout


def test_pretrain_cli_resume_continues_the_pretraining(tmp_path, capsys):
    import torch

    from genaug.cli import main

    args = ["pretrain", "autoencoder", "--data", "sample", "--labels-per-class", "2", "--finetune-steps", "2",
            "--no-progress"]
    out = tmp_path / "run"
    assert main([*args, "--epochs", "1", "--out", str(out)]) == 0
    one = torch.load(out / "pretrained" / "checkpoint.pt", weights_only=True)["step"]
    assert main([*args, "--epochs", "2", "--out", str(out)]) == 2  # the folder holds a run
    assert main([*args, "--epochs", "2", "--resume", str(out)]) == 0
    assert torch.load(out / "pretrained" / "checkpoint.pt", weights_only=True)["step"] == 2 * one
    capsys.readouterr()
    assert main([*args, "--resume", str(out), "--out", str(tmp_path / "other")]) == 2
    assert "names another" in capsys.readouterr().err
    assert main([*args, "--resume", str(out), "--backbone", str(out / "pretrained")]) == 2


def test_pretrain_cli_semi_supervised_gan(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "genaug.cli", "pretrain", "ssgan", "--epochs", "1", "--labels-per-class", "5",
         "--student-steps", "5", "--out", str(tmp_path), "--no-progress"],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "test accuracy" in res.stdout and "50 labels" in res.stdout
    from genaug.checkpoint import load_module
    from genaug.models import Classifier
    from genaug.models.ssgan import SSGANDiscriminator

    clf, card = load_module(tmp_path / "classifier")
    assert isinstance(clf, SSGANDiscriminator) and card["provenance"]["labels"] == 50
    assert len(card["provenance"]["labelled_indices"]) == 50
    student, student_card = load_module(tmp_path / "student")
    assert isinstance(student, Classifier) and student.config.num_classes == 10
    prov = student_card["provenance"]
    assert prov["student_steps"] == 5 and prov["labelled_indices"] == card["provenance"]["labelled_indices"]
    assert f"test accuracy {prov['test_accuracy']:.4f}" in res.stdout.split("student CNN")[1]
    assert prov["student_rounds"] == 1


def test_pretrain_cli_student_rounds_need_student_steps(tmp_path, capsys):
    from genaug.cli import main

    assert main(["pretrain", "ssgan", "--student-rounds", "2", "--out", str(tmp_path / "o")]) == 2
    assert "--student-rounds 2 trains that many student CNNs: it needs --student-steps N" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_coloured_digits_folder_example_writes_an_rgb_folder_genaug_trains_on(tmp_path):
    from genaug.cli import main

    out = tmp_path / "coloured"
    res = subprocess.run([sys.executable, str(REPO / "examples" / "coloured_digits_folder.py"), "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == [str(c) for c in range(10)]
    assert sum(1 for _ in out.rglob("*.png")) == 1000
    assert main(["train", "cdcgan", "--data", str(out), "--max-steps", "1", "--batch-size", "8", "--no-progress",
                 "--out", str(tmp_path / "run"), "--set", 'tensorboard="off"']) == 0
    import genaug

    assert genaug.load_generator(tmp_path / "run").image_shape == (3, 32, 32)


def test_latent_prior_example_runs(tmp_path):
    out = tmp_path / "gmm"
    res = subprocess.run([sys.executable, str(REPO / "examples" / "latent_prior.py"), "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (out / "grid.png").is_file() and (out / "config.json").is_file()
    again = subprocess.run([sys.executable, str(REPO / "examples" / "latent_prior.py"), "--out", str(out)],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "--overwrite" in again.stderr
