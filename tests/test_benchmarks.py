"""Benchmarks in seconds-long configurations: every row, column and stage appears."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO
from safetensors.torch import load_file

from genaug.checkpoint import load_module
from genaug.data.hdf5 import weights_sha256

sys.path.insert(0, str(REPO / "benchmarks"))
import augmentation  # noqa: E402

CASES = {
    "low data, 8 per class": ["real only", "+ cVAE trained on the N labels only",
                              "+ cVAE trained on the N labels only, gated (real-only CNN >= 0.9)",
                              "+ cVAE semi-supervised (N labels + unlabelled rest)",
                              "+ mnist-cvae (transfer: it saw all 60,000 labels)"],
    "imbalanced (classes 5-9 cut to 1%)": ["real only", "real, class-balanced resampling",
                                           "real topped up to balance with a cVAE trained on it (balanced sampling)",
                                           augmentation.RESAMPLED_MIX,
                                           "balanced real set (all 60,000; the ceiling)"],
    "full data (60,000)": ["real only", "+ mnist-cvae"],
}


def test_tiny_augmentation_table_has_every_row_and_column(tmp_path):
    table = augmentation.main(["--tiny", "--out", str(tmp_path), "--seeds", "2", "--labels", "10"])
    got = {(r["case"], r["row"]): r for r in table["rows"]}
    assert set(got) == {(case, row) for case, rows in CASES.items() for row in rows}
    for (case, row), r in got.items():
        assert r["seeds"] == 2 and 0 <= r["mean"] <= 100 and r["std"] >= 0 and r["steps"] == 3
        mixed = row.startswith(("+", "real topped up")) or row == augmentation.RESAMPLED_MIX
        assert (r["fraction"] is None) == (not mixed), (case, row)
    assert set(table["gap_recovered"]) == {"real, class-balanced resampling",
                                           "real topped up to balance with a cVAE trained on it (balanced sampling)",
                                           augmentation.RESAMPLED_MIX}
    text = table["text"]
    header = "| case | row | steps | synthetic share | test accuracy (mean ± std) | seeds | vs real only |"
    assert header in text
    assert text.count("\n| ") == 1 + len(got)  # the header row, then one line per row
    # The generators it trained record how: the semi-supervised one its labelled images.
    semi = augmentation.genaug.load_generator(str(tmp_path / "gen" / "semi-8-seed0")).provenance
    assert semi["semi_supervised"]["labels_per_class"] == 8


def test_a_second_run_reuses_the_cache_and_report_needs_no_data(tmp_path):
    augmentation.main(["--tiny", "--out", str(tmp_path), "--seeds", "1", "--labels", "10", "--cases", "full"])
    results = sorted(p.name for p in (tmp_path / "results").iterdir())
    before = {p: (tmp_path / "results" / p).read_text() for p in results}
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "augmentation.py"), "--out", str(tmp_path),
                          "--stage", "report"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "full data (60,000) | real only" in res.stdout
    augmentation.main(["--tiny", "--out", str(tmp_path), "--seeds", "1", "--labels", "10", "--cases", "full"])
    assert {p: (tmp_path / "results" / p).read_text() for p in results} == before


def test_semi_row_with_a_student_labeller_and_a_first_seed(tmp_path):
    table = augmentation.main(["--tiny", "--out", str(tmp_path), "--seeds", "1", "--first-seed", "1", "--labels", "10",
                               "--cases", "low", "--rows", "semi", "--labeller-student-steps", "50",
                               "--labeller-student-rounds", "2"])
    assert {(r["row"], r["seeds"]) for r in table["rows"]} == {
        ("real only", 1), ("+ cVAE semi-supervised (N labels + unlabelled rest)", 1)}
    assert sorted(p.name.rsplit("|", 1)[1] for p in (tmp_path / "results").iterdir()) == ["1.json", "1.json"]
    semi = augmentation.genaug.load_generator(str(tmp_path / "gen" / "semi-8-seed1")).provenance["semi_supervised"]
    assert (semi["labeller"], semi["labeller_student_rounds"]) == ("ssgan+student", 2)


def test_semi_row_takes_a_generator_trained_beforehand_through_a_bank(tmp_path):
    # A semi-supervised generator trained from seed 0's labelled images (the tiny semi row trains one).
    augmentation.main(["--tiny", "--out", str(tmp_path / "first"), "--seeds", "1", "--labels", "10",
                       "--cases", "low", "--rows", "semi"])
    given = str(tmp_path / "first" / "gen" / "semi-8-seed{seed}")
    table = augmentation.main(["--tiny", "--out", str(tmp_path / "out"), "--seeds", "1", "--labels", "10",
                               "--cases", "low", "--rows", "semi", "--semi-generator", given, "--semi-bank", "5"])
    row = "+ cvae semi-supervised, a stored bank of 5 per class (N labels + unlabelled rest)"
    assert {r["row"] for r in table["rows"]} == {"real only", row}
    bank = augmentation.genaug.load_generator(str(tmp_path / "out" / "gen" / "semi-bank-8-seed0-3-per-class.h5"))
    assert len(bank) == 30 and bank.provenance["generator_name"].endswith("semi-8-seed0")  # 3 per class when tiny
    # Seed 1's labelled images are not the ones it was trained from: refused, with what to do.
    with pytest.raises(SystemExit, match=r"other labelled images.*--labels-per-class 8 --seed 1001"):
        augmentation.main(["--tiny", "--out", str(tmp_path / "out"), "--seeds", "1", "--first-seed", "1",
                           "--labels", "10", "--cases", "low", "--rows", "semi", "--semi-generator",
                           given.format(seed=0)])
    with pytest.raises(SystemExit, match="not trained semi-supervised"):
        augmentation.main(["--tiny", "--out", str(tmp_path / "other"), "--seeds", "1", "--labels", "10",
                           "--cases", "low", "--rows", "semi", "--semi-generator", "mnist-cvae"])
    with pytest.raises(SystemExit):  # a bank of what?
        augmentation.main(["--tiny", "--out", str(tmp_path / "other"), "--semi-bank", "5"])
    # A gated bank: a CNN trained on the generator's own pseudo-labels redraws what it doubts.
    table = augmentation.main(["--tiny", "--out", str(tmp_path / "out"), "--seeds", "1", "--labels", "10",
                               "--cases", "low", "--rows", "semi", "--semi-generator", given, "--semi-bank", "5",
                               "--bank-gate", "0.2", "--bank-gate-steps", "3"])
    gated_row = ("+ cvae semi-supervised, a stored bank of 5 per class, gated (a CNN on its own pseudo-labels "
                 ">= 0.2) (N labels + unlabelled rest)")
    assert {r["row"] for r in table["rows"]} == {"real only", row, gated_row}
    gated = augmentation.genaug.load_generator(str(tmp_path / "out" / "gen" /
                                                   "semi-bank-8-seed0-3-per-class-gate0.2.h5"))
    assert len(gated) == 30 and gated.provenance["generator_family"] == "filtered"
    assert json.loads(gated.provenance["generator_config"])["config"]["min_confidence"] == 0.05  # tiny
    # The cVAE has no sampler fields to set; a diffusion model's (sample_steps, guidance) go into the
    # bank's file name and the row's name.
    with pytest.raises(ValueError, match="sampling may set only"):
        augmentation.main(["--tiny", "--out", str(tmp_path / "out"), "--seeds", "1", "--labels", "10", "--cases",
                           "low", "--rows", "semi", "--semi-generator", given, "--semi-bank", "5",
                           "--bank-sampling", "sample_steps=40"])
    for bad in (["--bank-gate", "0.5"], ["--semi-generator", given, "--semi-bank", "5", "--bank-gate", "1.5"],
                ["--semi-generator", given, "--semi-bank", "5", "--bank-sampling", "steps"]):
        with pytest.raises(SystemExit):
            augmentation.main(["--tiny", "--out", str(tmp_path / "other"), *bad])
    # The bank in --out is of these weights: a generator with other weights is refused, not mixed in.
    changed = augmentation.genaug.load_generator(given.format(seed=0))
    with torch.no_grad():
        next(changed.parameters()).add_(0.01)
    changed.save_pretrained(tmp_path / "changed")
    (tmp_path / "out" / "results").rename(tmp_path / "old-results")
    with pytest.raises(SystemExit, match="exported with other weights sha256"):
        augmentation.main(["--tiny", "--out", str(tmp_path / "out"), "--seeds", "1", "--labels", "10", "--cases",
                           "low", "--rows", "semi", "--semi-generator", str(tmp_path / "changed"), "--semi-bank", "5"])
    # The gate's folder keeps its CNN alone, with the hash of the weights it was trained for.
    gate_folder = tmp_path / "out" / "gen" / "semi-gate-8-seed0-steps3"
    _, card = load_module(gate_folder)
    assert card["family"] == "classifier" and not list(gate_folder.glob("base*"))
    assert card["provenance"]["generator_sha256"] == weights_sha256(augmentation.genaug.load_generator(
        given.format(seed=0)))
    with pytest.raises(SystemExit, match="holds a gate trained for a generator with other weights"):
        augmentation.main(["--tiny", "--out", str(tmp_path / "out"), "--seeds", "1", "--labels", "10", "--cases",
                           "low", "--rows", "semi", "--semi-generator", str(tmp_path / "changed"), "--semi-bank", "5",
                           "--bank-gate", "0.2", "--bank-gate-steps", "3"])
    # A folder there that holds something else (here a generator) is refused in one line, not a traceback.
    changed.save_pretrained(tmp_path / "other-out" / "gen" / "semi-gate-8-seed0-steps3")
    with pytest.raises(SystemExit, match="does not hold a gate's CNN"):
        augmentation.main(["--tiny", "--out", str(tmp_path / "other-out"), "--seeds", "1", "--labels", "10",
                           "--cases", "low", "--rows", "semi", "--semi-generator", given, "--semi-bank", "5",
                           "--bank-gate", "0.2", "--bank-gate-steps", "3"])


def test_transfer_row_draws_from_an_exported_file(tmp_path):
    from helpers import tiny_generator

    from genaug.data.hdf5 import export_hdf5

    bank = export_hdf5(tiny_generator("vae"), tmp_path / "bank.h5", per_class=3, progress=False)
    table = augmentation.main(["--tiny", "--out", str(tmp_path / "out"), "--seeds", "1", "--labels", "10",
                               "--cases", "low", "full", "--rows", "transfer", "--generator", str(bank)])
    rows = {(r["case"], r["row"]) for r in table["rows"]}
    assert ("low data, 8 per class", "+ bank.h5 (stored samples) (transfer: it saw all 60,000 labels)") in rows
    assert ("full data (60,000)", "+ bank.h5 (stored samples)") in rows  # tiny runs keep the real names
    assert all(0.0 <= r["mean"] <= 100.0 for r in table["rows"])  # percent


def test_diffusion_candidates_smoke_writes_every_stage(tmp_path):
    out = tmp_path / "dc"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "diffusion_candidates.py"), "--data", "sample",
                           "--out", str(out), "--smoke", "--candidates", "w32"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train"]["w32"]["steps"] == 8
    assert set(summary["val"]) == {"w32-g0", "w32-g0.5", "w32-gated"}
    for report in summary["val"].values():
        assert {"fid", "label_fidelity", "tstr", "trtr", "recall"} <= set(report)
    assert summary["chosen"] in summary["val"]
    assert summary["test"]["samples"] == 200  # the smoke test evaluation: 20 per class
    stored = load_file(str(out / "cand-w32" / "model.safetensors"))
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    assert (out / "grid.png").stat().st_size > 0


def _write_idx(path, array):
    import numpy as np

    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = 0x0800 | array.ndim  # type code 0x08 (unsigned byte), then the number of dimensions
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.tobytes())


def _mnist_root_from_sample(root):
    """torchvision's MNIST layout, filled with the bundled sample (800 train, 200 test images)."""
    from genaug.data import MNISTSample, as_tensors

    x, y = as_tensors(MNISTSample())
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, part in (("train", slice(0, 800)), ("t10k", slice(800, 1000))):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", x[part, 0].numpy())
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", y[part].numpy())
    return root


def test_few_labels_student_row_reports_the_gan_and_the_cnn(tmp_path, capsys, monkeypatch):
    import few_labels

    root = _mnist_root_from_sample(tmp_path / "data")
    out = tmp_path / "s.json"
    monkeypatch.setattr(sys, "argv", [
        "few_labels.py", "--data-root", str(root), "--recipes", few_labels.STUDENT, "--labels", "2", "--seeds", "1",
        "--ssgan-epochs", "1", "--student-steps", "3", "--device", "cpu", "--json", str(out)])
    few_labels.main()
    saved = json.loads(out.read_text())
    assert set(saved["results"]) == {"semi-supervised gan|2|0", f"{few_labels.STUDENT}|2|0"}
    assert all(0.0 <= acc <= 1.0 for accs in saved["results"].values() for acc in accs)
    assert saved["settings"]["student_steps"] == 3
    table = capsys.readouterr().out
    assert "semi-supervised gan" in table and few_labels.STUDENT in table
    assert few_labels.CONSISTENCY not in table


def test_few_labels_consistency_row_follows_the_last_student_round(tmp_path, capsys, monkeypatch):
    import few_labels

    root = _mnist_root_from_sample(tmp_path / "data")
    out = tmp_path / "s.json"
    monkeypatch.setattr(sys, "argv", [
        "few_labels.py", "--data-root", str(root), "--recipes", few_labels.STUDENT, "--labels", "2", "--seeds", "1",
        "--ssgan-epochs", "1", "--student-steps", "3", "--student-rounds", "2", "--consistency-steps", "2",
        "--consistency-threshold", "0.5", "--consistency-supervised", "pseudo", "--consistency-align",
        "--consistency-lr", "1e-4", "--device", "cpu", "--json", str(out)])
    few_labels.main()
    saved = json.loads(out.read_text())
    assert set(saved["results"]) == {"semi-supervised gan|2|0", f"{few_labels.STUDENT}|2|0",
                                     f"{few_labels.STUDENT} (round 2)|2|0", f"{few_labels.CONSISTENCY}|2|0"}
    assert 0.0 <= saved["results"][f"{few_labels.CONSISTENCY}|2|0"][0] <= 1.0
    assert saved["settings"]["consistency_steps"] == 2 and saved["settings"]["consistency_threshold"] == 0.5
    assert saved["settings"]["consistency_supervised"] == "pseudo" and saved["settings"]["consistency_align"]
    assert saved["settings"]["consistency_lr"] == 1e-4
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split("  ")[0] for line in lines if line.startswith("ssgan labels")]
    assert rows[-1] == few_labels.CONSISTENCY  # printed after the rounds it starts from
    monkeypatch.setattr(sys, "argv", ["few_labels.py", "--data-root", str(root), "--recipes", "semi-supervised gan",
                                      "--consistency-steps", "2"])
    with pytest.raises(SystemExit):
        few_labels.main()
    assert f"add '{few_labels.STUDENT}' to --recipes" in capsys.readouterr().err


def test_augmentation_validation_holds_out_training_images_and_never_reads_the_test_set(tmp_path, monkeypatch):
    seen = []
    real_train_and_test = augmentation.train_and_test

    def spy(x, y, tx, ty, **kw):
        seen.append((x, tx))
        return real_train_and_test(x, y, tx, ty, **kw)

    monkeypatch.setattr(augmentation, "train_and_test", spy)
    table = augmentation.main(["--tiny", "--out", str(tmp_path), "--seeds", "1", "--labels", "10", "--cases", "low",
                               "full", "--validation", "150", "--rows", "own", "--own-fraction", "0.25"])
    train, _, test, _ = augmentation._sample()
    as_rows, test_rows = {bytes(img.numpy()) for img in train}, {bytes(img.numpy()) for img in test}
    for x, tx in seen:
        assert len(tx) == 150
        held_out = {bytes(img.numpy()) for img in tx}
        assert held_out <= as_rows and not held_out & test_rows
        assert not held_out & {bytes(img.numpy()) for img in x}  # nor trained on
    got = {(r["case"], r["row"]): r for r in table["rows"]}
    # Only the asked-for low-data rows, at the own-label share; sizes name the smaller training set.
    assert set(got) == {("low data, 8 per class", "real only"), ("low data, 8 per class",
                        "+ cVAE trained on the N labels only"), ("full data (650)", "real only"),
                        ("full data (650)", "+ mnist-cvae")}
    assert got[("low data, 8 per class", "+ cVAE trained on the N labels only")]["fraction"] == 0.25
    assert "validation accuracy (mean ± std)" in table["text"] and "150 held-out training images" in table["text"]
    # One folder, one evaluation set: a test-set run into it is refused.
    with pytest.raises(SystemExit, match="give another --out"):
        augmentation.main(["--tiny", "--out", str(tmp_path), "--seeds", "1", "--cases", "full"])
    # A cached row is not reused for another share: the run is refused instead.
    with pytest.raises(SystemExit, match="fraction.*0.25.*0.5.*give another --out"):
        augmentation.main(["--tiny", "--out", str(tmp_path), "--seeds", "1", "--labels", "10", "--cases", "low",
                           "--validation", "150", "--rows", "own", "--own-fraction", "0.5"])


def test_train_throughput_amp_compares_float32_and_bf16():
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "train_throughput.py"), "--amp", "--families", "cvae",
         "--steps", "2", "--batch-size", "8", "--repeats", "1"],
        capture_output=True, text=True, check=True, cwd=REPO, timeout=300,
    ).stdout
    header, row = out.strip().splitlines()[-2:]
    assert header.split()[:4] == ["family", "float32", "bf16", "ratio"]
    name, off, bf16, ratio = row.split()
    assert name == "cvae" and float(off) > 0 and float(bf16) > 0
    assert float(ratio) == pytest.approx(float(bf16) / float(off), rel=0.05)


def test_train_throughput_models_compares_model_settings():
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "train_throughput.py"), "--families", "cddpm", "--steps", "2",
         "--batch-size", "8", "--repeats", "1", "--models", 'narrow={"channels": [16, 32]}',
         'wide={"channels": [32, 64]}'],
        capture_output=True, text=True, check=True, cwd=REPO, timeout=300,
    ).stdout
    header, *rows = out.strip().splitlines()[-3:]
    assert header.split() == ["family", "model", "weights", "img/s", "step", "time", "ratio"]
    (_, n1, w1, r1, q1), (_, n2, w2, r2, q2) = (row.split() for row in rows)
    assert (n1, n2) == ("narrow", "wide")
    assert int(w2.replace(",", "")) > 2 * int(w1.replace(",", ""))  # the settings reached the model
    assert float(q1) == 1.0 and float(q2) == pytest.approx(float(r1) / float(r2), rel=0.05)


@pytest.mark.parametrize("models", [["x=[1]"], ["a={}", "a={}"], ["noequals"]])
def test_train_throughput_models_refuses_bad_settings(models):
    res = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "train_throughput.py"), "--models", *models],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert res.returncode == 2 and "--models" in res.stderr


def test_sampling_amp_compares_float32_and_bf16():
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "sampling.py"), "--amp", "--generators", "mnist-cvae",
         "--batch-sizes", "8", "--repeats", "1"],
        capture_output=True, text=True, check=True, cwd=REPO, timeout=300,
    ).stdout
    header, _, row = out.strip().splitlines()[-3:]
    assert header.startswith("| generator | batch | float32 samples/s | bf16 samples/s | bf16 / float32 |")
    name, batch, off, bf16, ratio, change, changed = [c.strip() for c in row.strip("|").split("|")]
    assert (name, batch) == ("mnist-cvae", "8")
    off, bf16 = float(off.replace(",", "")), float(bf16.replace(",", ""))
    assert off > 0 and bf16 > 0 and float(ratio.rstrip("x")) == pytest.approx(bf16 / off, rel=0.05)
    assert 0 < float(change) < 0.05 and changed.endswith("%")


def test_a_generator_trained_from_saved_training_images_serves_the_validation_run(tmp_path):
    # --save-training writes the images a --validation run trains on, in its order: a generator
    # trained from that file with the row's seed records the row's labelled images.
    from genaug.cli import main as cli

    data = tmp_path / "train.npz"
    augmentation.main(["--tiny", "--validation", "100", "--save-training", str(data)])
    with np.load(data) as f:
        assert f["images"].shape == (700, 28, 28) and f["images"].dtype == np.uint8 and len(f["labels"]) == 700
    assert cli(["train", "cvae", "--data", str(data), "--labels-per-class", "8", "--seed", "1000",
                "--max-steps", "3", "--labeller-epochs", "1", "--no-progress", "--out", str(tmp_path / "semi")]) == 0
    table = augmentation.main(["--tiny", "--validation", "100", "--out", str(tmp_path / "val"), "--seeds", "1",
                               "--labels", "10", "--cases", "low", "--rows", "semi",
                               "--semi-generator", str(tmp_path / "semi"), "--semi-bank", "5"])
    assert len(table["rows"]) == 2 and "validation" in table["text"]
    with pytest.raises(SystemExit, match="exists"):  # never over a file
        augmentation.main(["--tiny", "--validation", "100", "--save-training", str(data)])
    # Without --validation the run trains on other images: the same generator is refused.
    with pytest.raises(SystemExit, match="other labelled images"):
        augmentation.main(["--tiny", "--out", str(tmp_path / "test"), "--seeds", "1", "--labels", "10",
                           "--cases", "low", "--rows", "semi", "--semi-generator", str(tmp_path / "semi")])
