from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from helpers import h5_contents, tiny_generator
from torch.utils.data import DataLoader

from genaug.data.hdf5 import HDF5Dataset, export_hdf5, plan_labels


@pytest.fixture(scope="module")
def gen():
    return tiny_generator("vae")


def test_round_trip_layout_and_attributes(gen, tmp_path):
    path = export_hdf5(gen, tmp_path / "s.h5", per_class=7, batch_size=16, seed=3, progress=False)
    with h5py.File(path, "r") as f:
        assert f["images"].dtype == np.uint8 and f["images"].shape == (70, 28, 28)
        assert f["labels"].dtype == np.int64
        assert f["images"].chunks[0] >= 1 and f["images"].compression == "lzf"
        assert bool(f.attrs["complete"]) is True
        assert list(f.attrs["class_counts"]) == [7] * 10
        assert json.loads(f.attrs["generator_config"])["family"] == "vae"
        for key in ("schema_version", "genaug_version", "torch_version", "h5py_version",
                    "generator_sha256", "seed", "truncation", "classes", "created"):
            assert key in f.attrs
        labels = f["labels"][()]
        first = f["images"][:16]
    assert np.bincount(labels).tolist() == [7] * 10
    # The stored images are the generator's samples for block 0, quantised to uint8.
    from genaug.data.hdf5 import block_generator, to_uint8

    expect = to_uint8(gen.sample(torch.from_numpy(labels[:16]), generator=block_generator(3, 0)))
    assert np.array_equal(first, expect.squeeze(1).numpy())
    ds = HDF5Dataset(path)
    img, label = ds[5]
    assert img.shape == (1, 28, 28) and img.dtype == torch.uint8 and label == labels[5]
    assert ds.classes == gen.classes and len(ds) == 70 and "Number of datapoints: 70" in repr(ds)


def test_no_partial_file_and_no_silent_overwrite(gen, tmp_path):
    path = tmp_path / "s.h5"
    export_hdf5(gen, path, n=20, progress=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        export_hdf5(gen, path, n=20, progress=False)
    export_hdf5(gen, path, n=30, overwrite=True, progress=False)
    assert len(HDF5Dataset(path)) == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


def test_reader_refuses_incomplete_and_wrong_dtype(gen, tmp_path):
    path = export_hdf5(gen, tmp_path / "s.h5", n=10, progress=False)
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False
    with pytest.raises(ValueError, match="incomplete"):
        HDF5Dataset(path)
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = True
        del f["labels"]
        f["labels"] = np.zeros(10, dtype=np.float32)
    with pytest.raises(ValueError, match="'labels' must be int64, got float32"):
        HDF5Dataset(path)


def times_ten(t):
    return t * 10


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_reader_same_with_workers(gen, tmp_path, context):
    path = export_hdf5(gen, tmp_path / "s.h5", n=40, chunk_size=7, progress=False)
    ds = HDF5Dataset(path, target_transform=times_ten)
    assert ds._file is None  # nothing open before workers start
    loader = dict(batch_size=8, shuffle=True)
    a = list(DataLoader(ds, generator=torch.Generator().manual_seed(0), **loader))
    b = list(DataLoader(ds, generator=torch.Generator().manual_seed(0), num_workers=2,
                        multiprocessing_context=context, **loader))
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # Batched reads give the same items as single reads, in the requested order.
    items = ds.__getitems__([5, 1, 5, 39])
    for (x, y), i in zip(items, [5, 1, 5, 39], strict=True):
        assert torch.equal(x, ds[i][0]) and y == ds[i][1]


@pytest.mark.parametrize("chunk_size,compression", [(3, "lzf"), (1, "gzip"), (64, "none")])
def test_batched_reads_equal_single_reads(gen, tmp_path, chunk_size, compression):
    from genaug.data.hdf5 import read_rows

    path = export_hdf5(gen, tmp_path / "s.h5", n=50, chunk_size=chunk_size, compression=compression,
                       progress=False)
    ds = HDF5Dataset(path)
    rng = np.random.default_rng(0)
    for idx in ([], [0], [49, 0, 49], rng.integers(-50, 50, size=40).tolist(), rng.permutation(50).tolist()):
        items = ds.__getitems__(list(idx))
        assert len(items) == len(idx)
        for (x, y), i in zip(items, idx, strict=True):
            xi, yi = ds[i]
            assert torch.equal(x, xi) and y == yi
    with h5py.File(path, "r") as f:
        idx = rng.integers(0, 50, size=30)
        block, inverse = read_rows(f["images"], idx)
        assert np.array_equal(block[inverse], f["images"][()][idx])
    with pytest.raises(IndexError, match="index 50 out of range for 50 items"):
        ds.__getitems__([3, 50])
    with pytest.raises(IndexError, match="index -51 out of range"):
        ds.__getitems__([-51])


def test_plan_labels():
    assert np.bincount(plan_labels(3, n=10, class_weights=[1, 1, 2])).tolist() == [3, 2, 5]  # tie: lower index
    assert plan_labels(4, per_class=3, seed=1).tolist() == plan_labels(4, per_class=3, seed=1).tolist()
    with pytest.raises(ValueError, match="class_weights must be 3"):
        plan_labels(3, n=10, class_weights=[1, -1, 2])
    with pytest.raises(ValueError, match="exactly one of per_class or n"):
        plan_labels(3)


def _cli(*args, **kw):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "genaug.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300, **kw)


def test_kill_9_never_leaves_a_partial_final_file_and_resume_is_identical(saved_gen, tmp_path):
    import random
    import signal
    import subprocess
    import sys
    import time

    n = 40000
    ref = export_hdf5(tiny_generator_from(saved_gen), tmp_path / "ref.h5", n=n, batch_size=100, progress=False)
    out, partial = tmp_path / "out.h5", tmp_path / ".out.h5.partial"
    args = ["export", "--generator", str(saved_gen), "--n", str(n), "--batch-size", "100", "--out", str(out),
            "--no-progress", "--device", "cpu", "--resume"]
    rng = random.Random(0)
    progress = []
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "genaug.cli", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while not (partial.exists() or out.exists()) and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))  # a random moment while writing
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists():  # it finished before the kill: the final file must be complete
            break
        try:
            with h5py.File(partial, "r") as f:
                progress.append(int(f.attrs["blocks_done"]))
        except OSError:
            progress.append(-1)  # killed mid-write: resume starts that partial file again
    if not out.exists():
        res = _cli(*args)
        assert res.returncode == 0, res.stderr
    assert any(p > 0 for p in progress), progress  # at least one kill landed mid-export
    a, b = h5_contents(ref), h5_contents(out)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert HDF5Dataset(out).attrs["complete"]
    assert not partial.exists()


def test_resume_starts_again_when_a_chunk_is_damaged(saved_gen, tmp_path, capsys):
    # What a kill during a compressed chunk's rewrite leaves: the file opens, one chunk does not read.
    gen = tiny_generator_from(saved_gen)
    ref = export_hdf5(gen, tmp_path / "ref.h5", n=3000, batch_size=100, chunk_size=500, progress=False)
    partial = tmp_path / ".out.h5.partial"
    export_hdf5(gen, tmp_path / "out.h5", n=3000, batch_size=100, chunk_size=500, progress=False)
    (tmp_path / "out.h5").rename(partial)
    with h5py.File(partial, "r+") as f:
        del f.attrs["complete"]
        f.attrs["blocks_done"] = 12
        info = f["images"].id.get_chunk_info(1)
    with open(partial, "r+b") as raw:
        raw.seek(info.byte_offset + 8)
        raw.write(b"\xff" * 64)
    export_hdf5(gen, tmp_path / "out.h5", n=3000, batch_size=100, chunk_size=500, progress=False, resume=True)
    assert "damaged chunk in partial file, starting again" in capsys.readouterr().out
    a, b = h5_contents(ref), h5_contents(tmp_path / "out.h5")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def tiny_generator_from(folder):
    import genaug

    return genaug.load_generator(folder)


def test_sharded_export_equals_single_process(saved_gen, tmp_path):
    import os
    import subprocess
    import sys

    single = export_hdf5(tiny_generator_from(saved_gen), tmp_path / "single.h5", per_class=25, batch_size=32,
                         progress=False)
    master = tmp_path / "sharded.h5"
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
         "genaug.cli", "export", "--distributed", "--generator", str(saved_gen), "--per-class", "25",
         "--batch-size", "32", "--out", str(master), "--no-progress", "--device", "cpu"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = h5_contents(single), h5_contents(master)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    ds = HDF5Dataset(master)
    assert len(ds) == 250 and list(ds.attrs["class_counts"]) == [25] * 10
    idx = np.random.default_rng(0).permutation(250)[:100].tolist()  # batched reads across the shards
    for (x, y), (xs, ys) in zip(ds.__getitems__(idx), HDF5Dataset(single).__getitems__(idx), strict=True):
        assert torch.equal(x, xs) and y == ys
    (tmp_path / "sharded.shard-00001-of-00002.h5").unlink()
    with pytest.raises(ValueError, match=r"shard file\(s\) \['sharded.shard-00001-of-00002.h5'\]"):
        HDF5Dataset(master)


def test_opens_in_hdf5_tools(gen, tmp_path):
    import shutil
    import subprocess

    if shutil.which("h5dump") is None:
        pytest.skip("h5dump (Debian's hdf5-tools) is not installed")
    path = export_hdf5(gen, tmp_path / "s.h5", n=20, progress=False)
    res = subprocess.run(["h5dump", "-H", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert 'DATASET "images"' in res.stdout and 'DATASET "labels"' in res.stdout
    assert 'ATTRIBUTE "complete"' in res.stdout


@pytest.mark.parametrize("family", ["filtered", "mixture"])
def test_with_latents_refused_for_generators_without_a_latent_map(family, tmp_path):
    with pytest.raises(ValueError, match=r"with_latents needs a generator whose images are a function"):
        export_hdf5(tiny_generator(family), tmp_path / "x.h5", per_class=2, with_latents=True, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_bf16_sampling_is_recorded_and_part_of_the_plan(tmp_path):
    gen = tiny_generator("vae")
    plain = export_hdf5(gen, tmp_path / "f32.h5", n=20, progress=False)
    bf16 = export_hdf5(tiny_generator("vae").set_amp("bf16"), tmp_path / "bf16.h5", n=20, progress=False)
    with h5py.File(plain, "r") as a, h5py.File(bf16, "r") as b:
        assert (a.attrs["amp"], b.attrs["amp"]) == ("off", "bf16")
        assert a.attrs["plan_sha256"] != b.attrs["plan_sha256"]  # a float32 partial file is not resumed in bf16
        assert not np.array_equal(a["images"][()], b["images"][()])


def test_resume_starts_again_when_the_sampler_changed(tmp_path, capsys):
    # Same weights, other sampler settings: the partial file's images are not this sampler's.
    from genaug.generators import with_sampling

    gen = tiny_generator("diffusion")
    other = with_sampling(gen, {"sample_steps": gen.config.sample_steps + 1})
    kwargs = {"n": 40, "batch_size": 10, "chunk_size": 5, "progress": False}
    ref = export_hdf5(other, tmp_path / "ref.h5", **kwargs)
    partial = tmp_path / ".out.h5.partial"
    export_hdf5(gen, tmp_path / "out.h5", **kwargs)
    (tmp_path / "out.h5").rename(partial)
    with h5py.File(partial, "r+") as f:
        del f.attrs["complete"]
        f.attrs["blocks_done"] = 2
    export_hdf5(other, tmp_path / "out.h5", resume=True, **kwargs)
    assert "made with other settings, starting again" in capsys.readouterr().out
    a, b = h5_contents(ref), h5_contents(tmp_path / "out.h5")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # The same sampler resumes from block 2: its first two blocks are the partial file's own.
    (tmp_path / "out.h5").rename(partial)
    with h5py.File(partial, "r+") as f:
        del f.attrs["complete"]
        f.attrs["blocks_done"] = 2
        f["images"][:20] = 0  # marks what was kept
    export_hdf5(other, tmp_path / "out.h5", resume=True, **kwargs)
    assert "starting again" not in capsys.readouterr().out
    images = h5_contents(tmp_path / "out.h5")[0]
    assert (images[:20] == 0).all() and np.array_equal(images[20:], a[0][20:])
