"""Output safety, one-line CLI errors and input checks: each failure found by a hostile check,
reproduced as it was found."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from helpers import h5_contents, tiny_generator
from PIL import Image

import genaug
from genaug._io import DiskFullError, OutputInUseError, atomic_write, output_lock
from genaug.cli import build_parser, field_values, main
from genaug.data.hdf5 import HDF5Dataset, export_hdf5
from genaug.transforms import SyntheticBatchMix, SyntheticReplace

TINY_CVAE = ["--set", 'model={"latent_dim": 4, "channels": [4, 8]}', "--set", 'tensorboard="off"']


def _cli(*args, cwd=None, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "genaug.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=cwd)


def _run(argv, capsys):
    """``genaug ARGV`` in this process: (exit status, stdout, stderr)."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exit_:
        rc = exit_.code
    out, err = capsys.readouterr()
    return rc, out, err


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- output safety


def _export_in_child(argv, err_path):
    """A forked child running ``genaug ARGV`` with its stderr in ``err_path``; exits with its status."""
    torch.set_num_threads(1)  # as in DataLoader workers: OpenMP's pool does not survive a fork
    fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 2)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    sys.stderr.flush()
    os._exit(code)


def test_two_exports_to_one_output_one_completes_the_other_is_refused(saved_gen, tmp_path):
    import multiprocessing

    n = 20000
    args = ["export", "--generator", str(saved_gen), "--num-samples", str(n), "--batch-size", "64",
            "--device", "cpu", "--no-progress"]
    lone = tmp_path / "lone.h5"
    export_hdf5(genaug.load_generator(saved_gen), lone, n=n, batch_size=64, progress=False)
    expected = h5_contents(lone)
    fork = multiprocessing.get_context("fork")
    locked = 0
    for attempt in range(5):
        out = tmp_path / f"out{attempt}.h5"
        errs = [tmp_path / f"err{attempt}-{i}.txt" for i in range(2)]
        procs = [fork.Process(target=_export_in_child, args=([*args, "--out", str(out)], e)) for e in errs]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        codes = [p.exitcode for p in procs]
        assert sorted(codes) == [0, 2], (codes, [e.read_text() for e in errs])
        message = errs[codes.index(2)].read_text().strip()
        assert len(message.splitlines()) == 1 and "Traceback" not in message, message
        assert "another genaug process (pid" in message or "exists" in message, message
        locked += "another genaug process" in message
        a, b = h5_contents(out), expected
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        assert len(HDF5Dataset(out)) == n
        assert not list(tmp_path.glob(f".out{attempt}.h5*")), "no partial or lock file is left"
    assert locked >= 1, "the exports never overlapped: make each one longer"


def test_lock_names_the_process_holding_it(gen_and_path):
    gen, path = gen_and_path
    with output_lock(path), pytest.raises(OutputInUseError, match=rf"another genaug process \(pid {os.getpid()} "):
        export_hdf5(gen, path, per_class=2, progress=False)
    assert not path.exists() and not path.with_name(f".{path.name}.partial").exists()
    export_hdf5(gen, path, per_class=2, progress=False)  # released: the next writer proceeds
    assert not path.with_name(f".{path.name}.lock").exists()


@pytest.fixture
def gen_and_path(tmp_path):
    return tiny_generator("vae"), tmp_path / "x.h5"


def test_train_refuses_a_folder_holding_a_finished_run(tmp_path, capsys):
    run = tmp_path / "run"
    base = ["train", "cvae", "--data", "sample", "--max-steps", 2, "--batch-size", 16, "--no-progress", *TINY_CVAE]
    assert _run([*base, "--out", run], capsys)[0] == 0
    before = _tree(run)
    rc, _, err = _run([*base, "--out", run], capsys)
    assert rc == 2 and "holds an earlier run (checkpoint.pt, log.jsonl, config.json" in err
    assert "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert _tree(run) == before, "nothing of the finished run changed"
    assert _run([*base, "--out", run, "--max-steps", 1, "--overwrite"], capsys)[0] == 0
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1], "the old run's log was not appended to"


def test_train_resume_of_a_missing_folder_is_refused(tmp_path, capsys):
    rc, _, err = _run(["train", "cvae", "--data", "sample", "--resume", tmp_path / "nope", "--no-progress"], capsys)
    assert rc == 2 and f"{tmp_path / 'nope'}: no checkpoint.pt to resume from" in err
    assert not (tmp_path / "nope").exists()


def test_sample_refuses_to_overwrite_an_image(tmp_path, capsys):
    out = tmp_path / "grid.png"
    out.write_bytes(b"mine")
    rc, _, err = _run(["sample", "--generator", "mnist-cvae", "--out", out, "--per-class", 1], capsys)
    assert rc == 2 and "exists; pass --overwrite" in err and out.read_bytes() == b"mine"
    assert _run(["sample", "--generator", "mnist-cvae", "--out", out, "--per-class", 1, "--overwrite"], capsys)[0] == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _run(["sample", "--generator", "mnist-cvae", "--out", out, "--per-class", 1, "--overwrite",
                 "--amp", "bf16"], capsys)[0] == 0


def test_atomic_write_respects_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.txt", lambda p: p.write_text("x"))
        os.umask(0o002)
        atomic_write(tmp_path / "b.txt", lambda p: p.write_text("x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o664


def test_saved_generator_files_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        tiny_generator("vae").save_pretrained(tmp_path / "g")
    finally:
        os.umask(old)
    for name in ("config.json", "model.safetensors"):
        assert stat.S_IMODE((tmp_path / "g" / name).stat().st_mode) == 0o644


# ---------------------------------------------------------------- full disk


def test_export_on_a_full_disk_stops_cleanly_and_resumes(saved_gen, tmp_path, monkeypatch, capsys):
    import genaug.data.hdf5 as hdf5

    lone = export_hdf5(genaug.load_generator(saved_gen), tmp_path / "lone.h5", n=3000, batch_size=100,
                       progress=False)
    out = tmp_path / "out.h5"
    calls = {"n": 0}

    def free(folder):  # room for 7 blocks, then the disk is full
        calls["n"] += 1
        return 10**12 if calls["n"] <= 7 else 1000

    monkeypatch.setattr(hdf5, "free_bytes", free)
    args = ["export", "--generator", saved_gen, "--num-samples", 3000, "--batch-size", 100, "--out", out,
            "--no-progress", "--device", "cpu"]
    rc, _, err = _run(args, capsys)
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert "the disk is full" in err and "700 of 3000 images are kept" in err and "--resume" in err
    assert not out.exists()
    with h5py.File(tmp_path / ".out.h5.partial", "r") as f:
        assert int(f.attrs["blocks_done"]) == 7
    monkeypatch.setattr(hdf5, "free_bytes", lambda folder: 10**12)
    assert _run([*args, "--resume"], capsys)[0] == 0
    a, b = h5_contents(out), h5_contents(lone)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs (needs the right to mount; skipped where there is none)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_a_really_full_disk_gives_one_line_and_keeps_what_was_there(small_disk, tmp_path):
    res = _cli("export", "--generator", "mnist-cvae", "--per-class", 1000, "--compression", "none",
               "--out", small_disk / "x.h5", "--no-progress", "--device", "cpu")
    assert res.returncode == 1, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "the disk is full" in res.stderr
    with h5py.File(small_disk / ".x.h5.partial", "r") as f:
        assert int(f.attrs["blocks_done"]) > 0
    (small_disk / ".x.h5.partial").unlink()
    # A training checkpoint that doesn't fit leaves the previous one as it was.
    from genaug._io import load_training_checkpoint, save_training_checkpoint

    save_training_checkpoint({"step": 1}, small_disk / "checkpoint.pt")
    with pytest.raises(DiskFullError, match="the disk is full .* the previous file is intact"):
        save_training_checkpoint({"w": torch.zeros(2_000_000)}, small_disk / "checkpoint.pt")
    assert load_training_checkpoint(small_disk / "checkpoint.pt") == {"step": 1}
    assert [p.name for p in small_disk.iterdir()] == ["checkpoint.pt"]


# ---------------------------------------------------------------- messages


def test_nan_stop_is_one_line_naming_the_checkpoint_that_exists(tmp_path):
    common = ["train", "cvae", "--data", "sample", "--epochs", 1, "--batch-size", 16, "--no-progress",
              "--set", "lr=1e20", *TINY_CVAE]
    res = _cli(*common, "--out", tmp_path / "a")
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "non-finite loss at step" in res.stderr and "no checkpoint was written yet" in res.stderr
    assert not (tmp_path / "a" / "checkpoint.pt").exists()
    res = _cli(*common, "--set", "checkpoint_every=1", "--out", tmp_path / "b")
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    named = res.stderr.split("the last good checkpoint is ")[1].split(" (step")[0]
    assert Path(named).is_file() and Path(named) == tmp_path / "b" / "checkpoint.pt"


def _write_h5_with_bad_classes(path):
    gen = tiny_generator("vae")
    export_hdf5(gen, path, per_class=2, progress=False)
    with h5py.File(path, "a") as f:
        f.attrs["classes"] = np.arange(10)


@pytest.fixture
def workdir(tmp_path, monkeypatch, saved_gen):
    """A folder with one of each kind of file a bad argument might name."""
    monkeypatch.chdir(tmp_path)
    Path("a_file.txt").write_text("not a folder")
    Path("a_folder").mkdir()
    Path("bad.json").write_text("{not json")
    Path("list.json").write_text("[1, 2]")
    Path("exists.png").write_bytes(b"mine")
    Path("exists.h5").write_bytes(b"mine")
    Path("exists.json").write_text("{}")
    Path("judge_out").mkdir()
    Path("judge_out/config.json").write_text("{}")
    Path("ckpt.pt").write_bytes(b"\x80\x04pickle")
    Path("bad.npz").write_bytes(b"not an npz")
    for c in ("a", "b"):
        Path("digits", c).mkdir(parents=True)
        Image.new("L", (28, 28)).save(Path("digits", c, "x.png"))
    _write_h5_with_bad_classes(Path("badclasses.h5"))
    shutil.copytree(saved_gen, "gen")
    return tmp_path


G = ["--generator", "gen"]
# Each bad argument set, and a piece of the one-line message that names what was wrong.
BAD_ARGUMENTS = [
    # train
    (["train"], "give FAMILY, one of ["),
    (["train", "nope"], "argument FAMILY: invalid choice: 'nope'"),
    (["train", "cvae", "--epochs", "0"], "argument --epochs: expected an integer >= 1, got 0"),
    (["train", "cvae", "--epochs", "-3"], "argument --epochs: expected an integer >= 1, got -3"),
    (["train", "cvae", "--batch-size", "0"], "argument --batch-size: expected an integer >= 1, got 0"),
    (["train", "cvae", "--max-steps", "-1"], "argument --max-steps: expected an integer >= 1"),
    (["train", "cvae", "--seed", "-1"], "argument --seed: expected an integer >= 0, got -1"),
    (["train", "cvae", "--seed", "one"], "argument --seed: expected an integer >= 0, got 'one'"),
    (["train", "cvae", "--device", "tpu"], "argument --device: device must be 'auto', 'cpu'"),
    (["train", "cvae", "--device", "cuda:7"], "argument --device: device 'cuda:7'"),
    (["train", "cvae", "--data", "nope.npz"], "--data must be"),
    (["train", "cvae", "--data", "a_folder"], "--data must be"),
    (["train", "cvae", "--data", "exists.h5"], "exists.h5: not a readable HDF5 file"),
    (["train", "cvae", "--data", "badclasses.h5"], "attribute 'classes' must be a JSON list"),
    (["train", "cvae", "--config", "nope.json"], "--config nope.json: no such file or folder"),
    (["train", "cvae", "--config", "a_folder"], "--config a_folder: expected a file, got a folder"),
    (["train", "cvae", "--config", "bad.json"], "--config bad.json: cannot read a JSON object"),
    (["train", "cvae", "--config", "list.json"], "--config list.json: expected a JSON object, got list"),
    (["train", "cvae", "--set", "nope=1"], "--set expects FIELD=VALUE with FIELD one of"),
    (["train", "cvae", "--set", "lr"], "--set expects FIELD=VALUE"),
    (["train", "cvae", "--set", "lr=-1"], "lr"),
    (["train", "cvae", "--set", "began_gamma=0.5"], "began_gamma"),
    (["train", "cvae", "--out", "a_file.txt"], "out_dir a_file.txt: expected a folder, got a file"),
    (["train", "cvae", "--out", "a_file.txt/run"], "a_file.txt is a file, not a folder"),
    (["train", "cvae", "--resume", "a_folder"], "a_folder: no checkpoint.pt to resume from"),
    (["train", "cvae", "--resume", "a_folder", "--overwrite"], "--resume DIR continues a run and --overwrite"),
    (["train", "cvae", "--resume", "a_folder", "--out", "other"], "--out other names another"),
    (["train", "cvae", "--batch-size", "5000"], "batch_size must be <= the images per process"),
    # sample
    (["sample", "--out", "x.png"], "the following arguments are required: --generator"),
    (["sample", *G], "the following arguments are required: --out"),
    (["sample", "--generator", "nope", "--out", "x.png"], "--generator nope: no registered generator"),
    (["sample", "--generator", "a_folder", "--out", "x.png"], "config.json: config file is missing"),
    (["sample", "--generator", "ckpt.pt", "--out", "x.png"], "looks like a pickle"),
    (["sample", *G, "--out", "x.png", "--per-class", "0"], "argument --per-class: expected an integer >= 1"),
    (["sample", *G, "--out", "x.png", "--truncation", "0"], "argument --truncation: expected a number in (0, 1]"),
    (["sample", *G, "--out", "x.png", "--truncation", "1.5"], "argument --truncation: expected a number in (0, 1]"),
    (["sample", *G, "--out", "x.png", "--seed", "-2"], "argument --seed: expected an integer >= 0"),
    (["sample", *G, "--out", "x.png", "--amp", "fp16"], "argument --amp: invalid choice: 'fp16'"),
    (["sample", *G, "--out", "x.txt"], "--out x.txt: expected an image file name"),
    (["sample", *G, "--out", "exists.png"], "--out exists.png: exists; pass --overwrite"),
    (["sample", *G, "--out", "a_file.txt/x.png"], "a_file.txt is a file, not a folder"),
    (["sample", *G, "--out", "x.png", "--mix-weights", "1,2"], "--mix-weights needs two or more --generator"),
    (["sample", *G, *G, "--out", "x.png", "--mix-weights", "1,x"], "--mix-weights expects comma-separated numbers"),
    (["sample", *G, *G, "--out", "x.png", "--mix-weights", "1"], "--mix-weights expects one number per"),
    # export
    (["export", *G, "--out", "x.h5"], "one of the arguments --per-class --num-samples/--n is required"),
    (["export", *G, "--out", "x.h5", "--per-class", "2", "--n", "5"], "not allowed with argument"),
    (["export", *G, "--out", "x.h5", "--n", "0"], "argument --num-samples/--n: expected an integer >= 1, got 0"),
    (["export", *G, "--out", "x.h5", "--per-class", "-1"], "argument --per-class: expected an integer >= 1"),
    (["export", *G, "--out", "x.h5", "--per-class", "2", "--batch-size", "0"], "argument --batch-size"),
    (["export", *G, "--out", "x.h5", "--per-class", "2", "--chunk-size", "0"], "argument --chunk-size"),
    (["export", *G, "--out", "x.h5", "--per-class", "2", "--compression", "zip"], "argument --compression"),
    (["export", *G, "--out", "x.csv", "--per-class", "2"], "--out x.csv: expected a file name ending in .h5"),
    (["export", *G, "--out", "a_folder", "--per-class", "2"], "--out a_folder: expected a file name ending in .h5"),
    (["export", *G, "--out", "exists.h5", "--per-class", "2"], "--out exists.h5: exists; pass --overwrite"),
    (["export", *G, "--out", "a_file.txt/x.h5", "--per-class", "2"], "a_file.txt is a file, not a folder"),
    (["export", *G, "--out", "x.h5", "--per-class", "2", "--resume", "--overwrite"], "give one of them"),
    (["export", *G, "--out", "x.h5", "--per-class", "2", "--class-weights", "1,2"], "--class-weights goes with"),
    (["export", *G, "--out", "x.h5", "--n", "9", "--class-weights", "1,a"], "--class-weights expects comma-sep"),
    (["export", *G, "--out", "x.h5", "--n", "9", "--class-weights", "1,2"], "class_weights must be 10"),
    (["export", *G, "--out", "x.h5", "--n", "9", "--min-confidence", "0.9"], "--min-confidence needs --judge"),
    (["export", *G, "--out", "x.h5", "--n", "9", "--min-confidence", "2"], "argument --min-confidence"),
    (["export", *G, "--out", "x.h5", "--n", "9", "--min-confidence", "0.5", "--judge", "nope"], "--judge nope"),
    (["export", *G, "--out", "x.h5", "--n", "9", "--distributed"], "--distributed runs under torchrun"),
    (["export", *G, "--out", "x.h5", "--n", "9", "--with-latents", "--min-confidence", "0.5",
      "--judge", "mnist-judge"], "with_latents needs a generator whose images are a function"),
    # pretrain
    (["pretrain", "cvae"], "argument FAMILY: invalid choice: 'cvae'"),
    (["pretrain", "vae", "--freeze", "some"], "argument --freeze: expected 'none', 'all' or a number"),
    (["pretrain", "vae", "--labels-per-class", "0"], "argument --labels-per-class: expected an integer >= 1"),
    (["pretrain", "vae", "--finetune-steps", "0"], "argument --finetune-steps"),
    (["pretrain", "vae", "--epochs", "0"], "argument --epochs"),
    (["pretrain", "vae", "--backbone", "nope"], "--backbone nope: no such file or folder"),
    (["pretrain", "vae", "--backbone", "a_file.txt"], "--backbone a_file.txt: expected a folder, got a file"),
    (["pretrain", "ssgan", "--backbone", "a_folder"], "--backbone is for the pretraining families"),
    (["pretrain", "vae", "--student-steps", "10"], "--student-steps trains a CNN on a semi-supervised GAN's"),
    (["pretrain", "ssgan", "--student-steps", "-1"], "argument --student-steps: expected an integer >= 0"),
    (["pretrain", "vae", "--out", "judge_out"], "--out judge_out: the folder holds earlier output"),
    (["pretrain", "vae", "--out", "a_file.txt"], "--out a_file.txt: expected a folder, got a file"),
    (["pretrain", "vae", "--data", "nope"], "--data must be"),
    # judge
    (["judge"], "the following arguments are required: action"),
    (["judge", "fit"], "argument action: invalid choice: 'fit'"),
    (["judge", "train", "--epochs", "0"], "argument --epochs"),
    (["judge", "train", "--out", "judge_out", "--data", "sample"], "--out judge_out: the folder holds earlier output"),
    (["judge", "train", "--out", "a_file.txt/j", "--data", "sample"], "a_file.txt is a file, not a folder"),
    (["judge", "train", "--data", "nope", "--out", "j"], "--data must be"),
    (["judge", "train", "--data", "mnist", "--data-root", "a_folder", "--out", "j"], "MNIST not found"),
    # evaluate
    (["evaluate", *G, "--data", "sample", "--per-class", "0"], "argument --per-class"),
    (["evaluate", *G, "--data", "sample", "--tstr-epochs", "0"], "argument --tstr-epochs"),
    (["evaluate", *G, "--data", "sample", "--json", "exists.json"], "--json exists.json: exists; pass --overwrite"),
    (["evaluate", *G, "--data", "sample", "--json", "a_folder"], "--json a_folder: expected a file path, got a fold"),
    (["evaluate", *G, "--data", "sample", "--json", "a_file.txt/r.json"], "a_file.txt is a file, not a folder"),
    (["evaluate", *G, "--data", "sample", "--judge", "nope"], "--judge nope: no such file or folder"),
    (["evaluate", *G, "--data", "sample", "--judge", "gen"], "expected a module saved with save_module"),
    (["evaluate", "--generator", "nope", "--data", "sample"], "--generator nope: no registered generator"),
    (["evaluate", *G, "--data", "mnist", "--data-root", "a_folder"], "MNIST not found"),
    (["evaluate", *G, "--data", "sample", "--val-split", "1"], "argument --val-split: expected a number in (0, 1)"),
    (["evaluate", *G, "--data", "sample", "--val-split", "0"], "argument --val-split: expected a number in (0, 1]"),
    (["evaluate", *G, "--data", "sample", "--val-split", "0.2", "--test-data", "sample"],
     "give --test-data or --val-split, not both"),
    (["judge", "train", "--data", "sample", "--test-data", "nope", "--out", "j"], "--data must be"),
    (["judge", "train", "--data", "bad.npz", "--out", "j"], "bad.npz: not a readable .npz file"),
    (["evaluate", *G, "--data", "digits", "--judge", "mnist-judge"], "--data digits has no test split of its own"),
    (["train", "cvae", "--resize", "0"], "argument --resize: expected H or H,W (positive integers), got '0'"),
    (["train", "cvae", "--resize", "16,x"], "argument --resize: expected H or H,W"),
    (["train", "cvae", "--mode", "CMYK"], "argument --mode: invalid choice: 'CMYK'"),
    (["train", "cvae", "--classes", "one"], "argument --classes: expected two or more comma-separated class"),
    (["train", "cvae", "--data", "digits", "--classes", "a,b,c"], "--classes expects 2 distinct names"),
    (["train", "cvae", "--data", "torchvision:Nope"], "torchvision.datasets has no dataset class 'Nope'"),
    (["train", "cvae", "--data", "torchvision:KMNIST", "--data-root", "a_folder"], "pass --download"),
    (["train", "cvae", "--data", "digits", "--resize", "30", "--batch-size", "2"], "must have H and W divisible by 4"),
    # top level
    ([], "the following arguments are required: COMMAND"),
    (["fly"], "argument COMMAND: invalid choice: 'fly'"),
]


def test_field_values_reads_json_values_and_names_the_flag_on_bad_items():
    got = field_values("--bank-sampling", ["sample_steps=40", "guidance=0.5", "name=cddpm", "flag=true"])
    assert got == {"sample_steps": 40, "guidance": 0.5, "name": "cddpm", "flag": True}
    assert field_values("--set", ["lr=1e-3"], ["lr", "epochs"]) == {"lr": 1e-3}
    bad = [(["sample_steps"], None, "--bank-sampling expects FIELD=VALUE, got 'sample_steps'"),
           (["=3"], None, "--bank-sampling expects FIELD=VALUE, got '=3'"),
           (["nope=1"], ["lr"], "--bank-sampling expects FIELD=VALUE with FIELD one of ['lr']")]
    for items, fields, message in bad:
        with pytest.raises(ValueError) as err:
            field_values("--bank-sampling", items, fields)
        assert message in str(err.value)


@pytest.mark.parametrize(("argv", "message"), BAD_ARGUMENTS, ids=[" ".join(a) or "(none)" for a, _ in BAD_ARGUMENTS])
def test_bad_arguments_are_one_line_exit_2_and_write_nothing(argv, message, workdir, capsys):
    before = _tree(workdir)
    rc, out, err = _run(argv, capsys)
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("genaug"), err
    assert message in lines[0], err
    assert _tree(workdir) == before, "a refused command wrote something"


def test_the_table_covers_every_subcommand_forty_times_over():
    commands = {argv[0] for argv, _ in BAD_ARGUMENTS if argv}
    assert commands >= {"train", "sample", "export", "pretrain", "judge", "evaluate"}
    assert len(BAD_ARGUMENTS) >= 40


def test_bad_arguments_exit_2_as_a_process_too(workdir):
    for argv in (["train", "cvae", "--seed", "-1"], ["export", *G, "--out", "exists.h5", "--per-class", "2"]):
        res = _cli(*argv, cwd=workdir)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "Traceback" not in res.stderr


def test_every_flag_passes_through_torchrun_unchanged():
    # torchrun takes an abbreviation of its own options from anywhere on the line ("--n" for --nnodes).
    from torch.distributed.run import get_args_parser

    torchrun = get_args_parser()
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, parser in sub.choices.items():
        for action in parser._actions:
            for flag in action.option_strings:
                if flag in ("-h", "--help") or flag == "--n":  # --n is the old name, kept for direct use
                    continue
                argv = ["--nproc-per-node", "2", "-m", "genaug.cli", name, flag, "1"]
                try:
                    parsed = torchrun.parse_args(argv)
                except SystemExit:
                    pytest.fail(f"torchrun takes genaug {name} {flag} as its own option")
                assert parsed.training_script_args == [name, flag, "1"], (name, flag)


# ---------------------------------------------------------------- silent acceptance


@pytest.fixture(scope="module")
def mixer():
    return SyntheticBatchMix(tiny_generator("vae"), fraction=0.5, seed=0)


def test_batch_mix_refuses_an_int32_batch(mixer):
    x = torch.randint(0, 255, (8, 1, 28, 28), dtype=torch.int32)
    with pytest.raises(TypeError, match="expected a uint8 or floating-point image batch, got dtype torch.int32"):
        mixer(x, torch.arange(8))


def test_batch_mix_refuses_a_float_batch_in_0_255_unless_told(mixer):
    x = torch.rand(8, 1, 28, 28) * 255
    with pytest.raises(ValueError, match=r"expected float images in \[0, 1\], got values in \[0.*, 25\d"):
        mixer(x, torch.arange(8))
    scaled = SyntheticBatchMix(mixer.model, fraction=0.5, seed=0, value_range=(0, 255))
    out, _ = scaled(x, torch.arange(8))
    unit, _ = SyntheticBatchMix(mixer.model, fraction=0.5, seed=0)(x / 255, torch.arange(8))
    torch.testing.assert_close(out / 255, unit)
    assert float(out.max()) > 1.5, "synthetic images are on the batch's scale"


def test_batch_mix_maps_synthetic_images_to_a_batch_in_minus_1_1():
    gen = tiny_generator("vae")
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    out, _ = SyntheticBatchMix(gen, fraction=1.0, seed=0, value_range=(-1, 1))(x, torch.arange(8))
    ref, _ = SyntheticBatchMix(gen, fraction=1.0, seed=0)(x.clamp(0, 1), torch.arange(8))
    torch.testing.assert_close(out, ref * 2 - 1)


def test_batch_mix_refuses_nan(mixer):
    x = torch.rand(8, 1, 28, 28)
    x[3, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        mixer(x, torch.arange(8))


def test_replace_refuses_nan_images():
    tf = SyntheticReplace(tiny_generator("vae"), p=1.0, seed=0)
    img = torch.full((1, 28, 28), float("nan"))
    with pytest.raises(ValueError, match="NaN or inf"):
        tf(img, 3)


def _sharded(tmp_path, saved_gen, name, seed):
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
         "genaug.cli", "export", "--distributed", "--generator", str(saved_gen), "--num-samples", "200",
         "--batch-size", "32", "--out", str(tmp_path / name), "--no-progress", "--device", "cpu",
         "--seed", str(seed)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return tmp_path / name


def test_a_shard_from_another_export_is_refused(saved_gen, tmp_path):
    a = _sharded(tmp_path / "a", saved_gen, "big.h5", seed=0)
    b = _sharded(tmp_path / "b", saved_gen, "big.h5", seed=1)
    assert len(HDF5Dataset(a)) == 200
    with h5py.File(a, "r") as f:
        identity = json.loads(f.attrs["shard_identity"])
    assert [i["shard"] for i in identity] == [[0, 2], [1, 2]] and identity[0]["seed"] == 0
    shard = "big.shard-00001-of-00002.h5"
    shutil.copy(b.parent / shard, a.parent / shard)
    with pytest.raises(ValueError, match=rf"shard file {shard} is not the one this master was written with"):
        HDF5Dataset(a)
    # A truncated shard is named, not reported as a bare h5py error.
    data = (b.parent / shard).read_bytes()
    (a.parent / shard).write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=rf"shard file {shard} is unreadable \(truncated or damaged"):
        HDF5Dataset(a)


def test_hdf5_with_non_string_classes_is_named(tmp_path):
    _write_h5_with_bad_classes(tmp_path / "x.h5")
    with pytest.raises(ValueError, match=r"x.h5: attribute 'classes' must be a JSON list of class names"):
        HDF5Dataset(tmp_path / "x.h5")


@pytest.mark.parametrize(("key", "value"), [("image_shape", [3, 32, 32]), ("value_range", [-1.0, 1.0]),
                                            ("latent_dim", 99)])
def test_card_disagreeing_with_its_config_is_refused(tmp_path, key, value):
    folder = tiny_generator("vae").save_pretrained(tmp_path / "g")
    card = json.loads((folder / "config.json").read_text())
    card[key] = value
    (folder / "config.json").write_text(json.dumps(card))
    with pytest.raises(genaug.CheckpointError, match=rf"{key} is .* but the config builds a generator with"):
        genaug.load_generator(folder)


def test_unique_lock_files_do_not_collide(tmp_path):
    paths = [tmp_path / f"{uuid.uuid4().hex}.h5" for _ in range(3)]
    with output_lock(paths[0]), output_lock(paths[1]), output_lock(paths[2]):
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f".{p.name}.lock" for p in paths)
    assert not list(tmp_path.iterdir())


def test_a_shard_with_no_items_is_written_and_read(tmp_path):
    # 40 items in one block of 512, over two ranks: rank 0 has no block at all.
    from genaug.data.hdf5 import shard_path, write_master

    gen = tiny_generator("vae")
    single = export_hdf5(gen, tmp_path / "single.h5", n=40, progress=False)
    master = tmp_path / "big.h5"
    shards = [shard_path(master, r, 2) for r in range(2)]
    for r, shard in enumerate(shards):
        export_hdf5(gen, shard, n=40, shard=(r, 2), progress=False)
    write_master(master, shards)
    assert len(HDF5Dataset(shards[0])) == 0 and len(HDF5Dataset(master)) == 40
    a, b = h5_contents(single), h5_contents(master)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_a_full_disk_anywhere_in_a_command_is_one_line_exit_1(monkeypatch, capsys, tmp_path):
    import errno

    import genaug.cli as cli

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "log.jsonl"))

    monkeypatch.setattr(cli, "_list", full)
    rc, _, err = _run(["list"], capsys)
    expected = f"genaug list: error: {tmp_path / 'log.jsonl'}: the disk is full (No space left on device)"
    assert rc == 1 and err.strip() == expected
