from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, TINY_MODEL
from PIL import Image

import genaug
from genaug.data import MNISTSample, as_tensors
from genaug.train import PRESETS, NonFiniteLossError, TrainConfig, Trainer, list_training_families

FAMILIES = list_training_families()


def tiny_config(family: str, **kw) -> TrainConfig:
    settings = dict(family=family, model=dict(TINY_MODEL[PRESETS[family].model]), batch_size=16,
                    progress=False, device="cpu", log_every=1, tensorboard="off", checkpoint_every=0)
    settings.update(kw)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def sample():
    return MNISTSample(train=True)


def test_all_source_families_are_trainable():
    assert set(FAMILIES) == {"autoencoder", "vae", "cvae", "cvae-wide", "gan", "cgan", "dcgan", "cdcgan",
                             "wgan", "wgan-gp", "cwgan-gp", "began",
                             "ddpm", "cddpm"}


@pytest.mark.parametrize("family", FAMILIES)
def test_family_trains_a_few_steps(family, sample, tmp_path):
    result = Trainer(tiny_config(family, max_steps=4), sample, out_dir=tmp_path).fit()
    assert result.step == 4 and not result.interrupted
    assert result.history and all(math.isfinite(v) for row in result.history for v in row.values())
    assert (tmp_path / "checkpoint.pt").is_file()
    assert list((tmp_path / "grids").glob("*.png"))
    card = json.loads((tmp_path / "config.json").read_text())
    assert card["provenance"]["steps"] == 4
    if family != "autoencoder":
        gen = genaug.load_generator(tmp_path)
        labels = torch.arange(4) if gen.num_classes else torch.full((4,), -1)
        assert gen.sample(labels).shape == (4, 1, 28, 28)


@pytest.mark.parametrize(("family", "cols", "rows"), [("cvae", 2, 10), ("vae", 8, 2)])
def test_grid_holds_grid_per_class_images_per_class(family, cols, rows, sample, tmp_path):
    # A conditional grid: one row per class; an unconditional one: 8 * grid_per_class images in rows of 8.
    Trainer(tiny_config(family, max_steps=1, grid_per_class=2), sample, out_dir=tmp_path).fit()
    (grid,) = (tmp_path / "grids").glob("*.png")
    with Image.open(grid) as img:  # save_image's 2-pixel padding around 28x28 cells
        assert img.size == (cols * 30 + 2, rows * 30 + 2)


def test_source_training_advice_defaults():
    wgan = TrainConfig(family="wgan")
    assert (wgan.optimizer, wgan.lr, wgan.clip_value, wgan.d_steps) == ("rmsprop", 5e-4, 0.01, 5)
    gp = TrainConfig(family="wgan-gp")
    assert gp.lipschitz == "gp" and PRESETS["wgan-gp"].model_defaults["d_norm"] != "batch"
    dc = TrainConfig(family="cdcgan")
    assert dc.betas[0] == 0.5 and dc.input_range == "tanh"
    assert TrainConfig(family="cvae").input_range == "sigmoid"
    began = TrainConfig(family="began")
    assert (began.began_gamma, began.began_lambda_k) == (0.9, 0.05)
    assert TrainConfig(family="began", began_gamma=0.5).began_gamma == 0.5
    assert not hasattr(dc.recipe, "began_gamma")  # a recipe has only its own fields
    with pytest.raises(ValueError, match="began_gamma applies to the BEGAN objective; family 'cdcgan'"):
        TrainConfig(family="cdcgan", began_gamma=0.5)
    shape = {"image_shape": (1, 28, 28), "num_classes": 10}
    assert TrainConfig(family="cgan").model_config(**shape)["conditioning"] == "projection"
    assert "conditioning" not in dc.model_config(**shape)  # the model's default: label joined to D's input
    own = TrainConfig(family="cgan", model={"conditioning": "concat"})
    assert own.model_config(**shape)["conditioning"] == "concat"


@pytest.mark.parametrize("family", ["vae", "cvae"])
def test_vae_loss_falls_over_50_steps(family, sample, tmp_path):
    cfg = TrainConfig(family=family, max_steps=50, batch_size=32, progress=False, device="cpu",
                      log_every=1, tensorboard="off", checkpoint_every=0)
    hist = Trainer(cfg, sample, out_dir=tmp_path).fit().history
    first = sum(r["loss"] for r in hist[:5]) / 5
    last = sum(r["loss"] for r in hist[-5:]) / 5
    assert last < 0.8 * first, (first, last)


def _state(trainer):
    sd = trainer.state_dict()
    return sd["nets"], sd["optimizers"], sd["ema"], sd["extra"]


def _assert_equal(a, b, path="state"):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_equal(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


@pytest.mark.parametrize("family", ["cvae", "cdcgan", "wgan", "wgan-gp", "began", "cddpm"])
def test_exact_resume(family, sample, tmp_path, deterministic):
    # 70 steps at batch 16 cross the epoch boundary of the 1000-image sample (62 batches).
    straight = Trainer(tiny_config(family, max_steps=70, epochs=2), sample, out_dir=tmp_path / "a")
    straight.fit()
    Trainer(tiny_config(family, max_steps=30, epochs=2), sample, out_dir=tmp_path / "b").fit()
    resumed = Trainer(tiny_config(family, max_steps=70, epochs=2), sample, out_dir=tmp_path / "b",
                      resume=True)
    assert resumed.step == 30
    resumed.fit()
    assert resumed.step == straight.step == 70
    _assert_equal(_state(straight), _state(resumed))


@pytest.mark.parametrize("family", ["cddpm", "cdcgan"])
def test_bf16_autocast_trains_on_cpu_and_resumes_exactly(family, sample, tmp_path, deterministic):
    # amp="bf16" runs the forward passes in bfloat16 on the CPU too ("auto" keeps it to CUDA).
    seen = []
    real_autocast = torch.autocast

    def spy(device_type, *args, **kwargs):
        seen.append((device_type, kwargs.get("dtype")))
        return real_autocast(device_type, *args, **kwargs)

    straight = Trainer(tiny_config(family, max_steps=70, epochs=2, amp="bf16"), sample, out_dir=tmp_path / "a")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "autocast", spy)
        result = straight.fit()
    assert ("cpu", torch.bfloat16) in seen
    assert all(math.isfinite(v) for row in result.history for v in row.values())
    off = Trainer(tiny_config(family, max_steps=70, epochs=2), sample, out_dir=tmp_path / "off").fit()
    assert off.history[-1] != result.history[-1]  # bf16 arithmetic, not the float32 run again
    Trainer(tiny_config(family, max_steps=30, epochs=2, amp="bf16"), sample, out_dir=tmp_path / "b").fit()
    resumed = Trainer(tiny_config(family, max_steps=70, epochs=2, amp="bf16"), sample, out_dir=tmp_path / "b",
                      resume=True)
    resumed.fit()
    _assert_equal(_state(straight), _state(resumed))


def test_amp_refuses_unknown_modes():
    with pytest.raises(ValueError, match="amp"):
        TrainConfig(family="cvae", amp="fp16")


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_lr_schedule_decays_every_optimizer_to_zero_and_resumes_exactly(schedule, sample, tmp_path, deterministic):
    import math

    cfg = tiny_config("cdcgan", max_steps=70, epochs=2, lr_schedule=schedule)
    seen = []
    straight = Trainer(cfg, sample, out_dir=tmp_path / "a")
    real_step = straight.recipe.train_step

    def spy(x, y, step):
        seen.append([group["lr"] for opt in straight.recipe.optimizers.values() for group in opt.param_groups])
        return real_step(x, y, step)

    straight.recipe.train_step = spy
    straight.fit()
    base = cfg.recipe.lr
    factor = (lambda t: 1 - t) if schedule == "linear" else (lambda t: 0.5 * (1 + math.cos(math.pi * t)))
    assert len(seen) == 70 and len(seen[0]) == 2  # the generator's and the discriminator's
    for step in (0, 35, 69):
        assert seen[step] == pytest.approx([base * factor(step / 70)] * 2)
    # Stopped after step 30 (as SIGTERM stops it) and resumed: the same run.
    half = Trainer(tiny_config("cdcgan", max_steps=70, epochs=2, lr_schedule=schedule, checkpoint_every=30),
                   sample, out_dir=tmp_path / "d")
    half._stop_requested = lambda: half.step >= 30  # stop as SIGTERM would, after step 30
    half.fit()
    resumed = Trainer(tiny_config("cdcgan", max_steps=70, epochs=2, lr_schedule=schedule, checkpoint_every=30),
                      sample, out_dir=tmp_path / "d", resume=True)
    assert resumed.step == 30
    resumed.fit()
    _assert_equal(_state(straight), _state(resumed))


def test_lr_schedule_is_checked_and_constant_by_default():
    assert TrainConfig(family="cvae").recipe.lr_schedule == "constant"
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(family="cvae", lr_schedule="step")


def test_resume_refuses_other_settings(sample, tmp_path):
    Trainer(tiny_config("cvae", max_steps=2), sample, out_dir=tmp_path).fit()
    with pytest.raises(ValueError, match=r"different settings for \['lr'\]"):
        Trainer(tiny_config("cvae", max_steps=4, lr=0.1), sample, out_dir=tmp_path, resume=True)


def test_resume_refuses_other_data(sample, tmp_path):
    x, y = as_tensors(sample)
    Trainer(tiny_config("cvae", max_steps=2), (x, y), out_dir=tmp_path).fit()
    other = x.clone()
    other[:, :, 0, 0] = 255 - other[:, :, 0, 0]  # one pixel of every image: same count, shape and classes
    for data in ((x[:-16], y[:-16]), (other, y), (x, (y + 1) % 10)):
        with pytest.raises(ValueError, match="written for other training data.*resume with the same data"):
            Trainer(tiny_config("cvae", max_steps=4), data, out_dir=tmp_path, resume=True)
    again = Trainer(tiny_config("cvae", max_steps=4), (x, y), out_dir=tmp_path, resume=True)
    assert again.step == 2


def test_resume_refuses_a_model_built_with_other_settings_and_says_how_to_resume(sample, tmp_path):
    # What a preset whose model defaults changed after the run started looks like: the run relied on
    # a default (decoder="compact" here) that the same config no longer gives.
    tiny = TINY_MODEL["began"]
    Trainer(tiny_config("began", max_steps=2, model={**tiny, "decoder": "compact"}), sample, out_dir=tmp_path).fit()
    path = tmp_path / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state["config"]["model"] = dict(tiny)  # as if "compact" had been the preset's default
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"model was built with other settings for \['decoder'\] "
                                         r"\(decoder='compact', now 'paper'\).*"
                                         r"resume with --set 'model=\{\"decoder\": \"compact\"\}'"):
        Trainer(tiny_config("began", max_steps=4), sample, out_dir=tmp_path, resume=True)
    # A checkpoint from before model configs were saved: the weights that don't fit are named in one line.
    del state["model_config"]
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"the checkpoint's generator weights do not fit the model this config "
                                         r"builds \(.*\); the 'began' preset's model defaults may have changed"):
        Trainer(tiny_config("began", max_steps=4), sample, out_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match=r"different settings for \['model'\] \(\['d_latent'\]\)"):
        Trainer(tiny_config("began", max_steps=4, model={**tiny, "d_latent": 4}), sample, out_dir=tmp_path,
                resume=True)
    # With the model settings it was trained with (as the messages say), it resumes, old checkpoint or new.
    pinned = {**tiny, "decoder": "compact"}
    resumed = Trainer(tiny_config("began", max_steps=4, model=pinned), sample, out_dir=tmp_path, resume=True)
    assert resumed.step == 2 and resumed.fit().step == 4
    again = Trainer(tiny_config("began", max_steps=6, model=pinned), sample, out_dir=tmp_path, resume=True)
    assert again.step == 4 and again.fit().step == 6


def test_cli_resume_takes_the_runs_family_settings_and_data(tmp_path, capsys):
    from genaug.cli import main

    out = tmp_path / "run"
    first = ["--data", "sample", "--resize", "20", "--batch-size", "16", "--no-progress", "--set", "lr=0.002",
             "--set", 'tensorboard="off"', "--set", 'model={"latent_dim": 4, "channels": [4, 8]}']
    assert main(["train", "cvae", *first, "--max-steps", "2", "--out", str(out)]) == 0
    assert main(["train", "--resume", str(out), "--max-steps", "4", "--no-progress"]) == 0  # nothing repeated
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4 and state["config"]["recipe"]["lr"] == 0.002
    assert state["data"]["image_shape"] == [1, 20, 20] and state["data_source"]["resize"] == (20, 20)
    # Other data, another family, or a changed setting on the command line are refused.
    capsys.readouterr()
    refused = [(["--data", "sample"], "other training data"), (["--set", "lr=0.01"], "different settings for ['lr']")]
    for extra, message in refused:
        assert main(["train", "--resume", str(out), "--max-steps", "6", "--no-progress", *extra]) == 2
        assert message in capsys.readouterr().err
    assert main(["train", "cdcgan", "--resume", str(out), "--max-steps", "6"]) == 2
    assert "continues a 'cvae' run" in capsys.readouterr().err
    assert main(["train", "--epochs", "1"]) == 2
    assert "give FAMILY" in capsys.readouterr().err
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 4


def test_nan_stops_run_and_keeps_last_good_checkpoint(sample, tmp_path):
    Trainer(tiny_config("cdcgan", max_steps=3), sample, out_dir=tmp_path).fit()
    trainer = Trainer(tiny_config("cdcgan", max_steps=10), sample, out_dir=tmp_path, resume=True)
    with torch.no_grad():
        next(trainer.step_impl.nets["discriminator"].parameters()).fill_(float("nan"))
    kept = r"step 4: d_loss = nan; the last good checkpoint is .*checkpoint.pt \(step 3\)"
    with pytest.raises(NonFiniteLossError, match=kept):
        trainer.fit()
    again = Trainer(tiny_config("cdcgan", max_steps=10), sample, out_dir=tmp_path, resume=True)
    assert again.step == 3
    again.fit()
    assert again.step == 10


def _cli(*args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "genaug.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300, **kw)


def test_sigterm_checkpoints_and_resumes(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "genaug.cli", "train", "cvae", "--data", "sample", "--epochs", "200",
           "--batch-size", "16", "--out", str(out), "--no-progress", "--set", "log_every=1",
           "--set", "tensorboard=\"off\"", "--set", 'model={"latent_dim": 4, "channels": [4, 8]}']
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "log.jsonl"
    deadline = time.time() + 120
    while not (log.exists() and log.stat().st_size > 0) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "interrupted" in stdout
    step = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    assert 0 < step < 200 * 62
    res = _cli("train", "cvae", "--data", "sample", "--epochs", "200", "--batch-size", "16",
               "--resume", str(out), "--no-progress", "--max-steps", str(step + 3),
               "--set", "log_every=1", "--set", "tensorboard=\"off\"",
               "--set", 'model={"latent_dim": 4, "channels": [4, 8]}')
    assert res.returncode == 0, res.stderr
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == step + 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "cvae", "--batch-size", "0"], "argument --batch-size: expected an integer >= 1, got 0"),
        (["train", "cvae", "--data", "nope"], "--data must be 'mnist', 'sample'"),
        (["train", "cvae", "--set", "lr=-1"], "lr must be in (0.0, inf], got -1"),
        (["train", "cvae", "--data", "mnist", "--data-root", "/nonexistent"], "t10k-labels-idx1-ubyte"),
        (["train", "diffusion"], "invalid choice"),
    ],
)
def test_cli_bad_arguments_exit_2_without_traceback(args, message, tmp_path):
    res = _cli(*args, "--out", str(tmp_path / "o"))
    assert res.returncode == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.stderr


def test_ddp_two_gloo_processes_keep_identical_weights(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(REPO / "tests" / "ddp_worker.py"), str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    from safetensors.torch import load_file

    r0, r1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    assert r0.keys() == r1.keys() and len(r0) > 10
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    init = load_file(str(out / "init.safetensors"))
    assert init.keys() <= r0.keys()
    assert any(not torch.equal(init[k], r0[k]) for k in init)  # it trained
    assert (out / "run" / "config.json").is_file()  # rank 0 wrote the outputs
    # Streamed through a DataLoader, each rank reads its DistributedSampler shard: the same run.
    streamed = tmp_path / "ddp-stream"
    res = subprocess.run([*cmd[:-1], str(streamed), "stream"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    s0 = load_file(str(streamed / "rank0.safetensors"))
    assert s0.keys() == r0.keys() and all(torch.equal(s0[k], r0[k]) for k in r0)


def test_mode_collapse_signals_with_a_judge(sample, tmp_path):
    from genaug.checkpoint import save_module
    from genaug.models import Classifier, ClassifierConfig

    cfg = ClassifierConfig(**TINY_MODEL["classifier"])
    judge = Classifier(cfg)
    with torch.no_grad():  # a judge that always answers class 3
        judge.head[1].bias.copy_(torch.arange(10).eq(3).float() * 100)
    save_module(judge, "classifier", cfg, tmp_path / "judge")
    trainer = Trainer(tiny_config("cdcgan", epochs=1, judge=str(tmp_path / "judge")), sample, out_dir=tmp_path / "run")
    trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    end = [r for r in rows if "grid" in r][-1]
    assert end["class_coverage"] == 0.1
    assert end["label_fidelity"] == pytest.approx(0.1)  # only the row of class 3 agrees
    assert end["diversity"] > 0
    with pytest.raises(ValueError, match="judge must be a classifier of 10 classes"):
        Trainer(tiny_config("cdcgan", judge=str(tmp_path / "run" / "discriminator")), sample, out_dir=tmp_path / "x")


def test_d_warmup_holds_the_generator(sample, tmp_path):
    trainer = Trainer(tiny_config("cdcgan", max_steps=5, d_warmup=3), sample, out_dir=tmp_path)
    g0 = {k: v.clone() for k, v in trainer.step_impl.nets["generator"].named_parameters()}
    hist = trainer.fit().history
    assert [("g_loss" in r) for r in hist] == [False, False, False, True, True]  # G waits 3 steps
    g1 = dict(trainer.step_impl.nets["generator"].named_parameters())
    assert any(not torch.equal(g0[k], g1[k]) for k in g0)
    with pytest.raises(ValueError, match="d_warmup applies to the GAN objective; family 'cvae'"):
        tiny_config("cvae", d_warmup=1)
    with pytest.raises(ValueError, match="d_warmup must be >= 0, got -1"):
        tiny_config("cdcgan", d_warmup=-1)


def test_init_starts_from_a_saved_generator(sample, tmp_path):
    Trainer(tiny_config("cdcgan", max_steps=3), sample, out_dir=tmp_path / "a").fit()
    saved = genaug.load_generator(tmp_path / "a").net.state_dict()
    cfg = tiny_config("cdcgan", max_steps=1, init=str(tmp_path / "a"), d_warmup=1)
    trainer = Trainer(cfg, sample, out_dir=tmp_path / "b")
    now = trainer.step_impl.nets["generator"].state_dict()
    assert saved.keys() == now.keys() and all(torch.equal(saved[k], now[k]) for k in saved)
    trainer.fit()  # one discriminator-only step: the generator's weights are still the saved ones
    tuned = genaug.load_generator(tmp_path / "b")
    assert all(torch.equal(saved[k], p) for k, p in tuned.net.named_parameters())
    assert tuned.provenance["init"]["from"] == str(tmp_path / "a") and tuned.provenance["init"]["steps"] == 3
    other = {**TINY_MODEL["dcgan"], "g_dense": 64}
    with pytest.raises(ValueError, match=r"different model config.*'g_dense': \(32, 64\)"):
        Trainer(tiny_config("cdcgan", model=other, init=str(tmp_path / "a")), sample, out_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="expected a saved 'vae' generator, got 'dcgan'"):
        Trainer(tiny_config("cvae", init=str(tmp_path / "a")), sample, out_dir=tmp_path / "d")
    # Resuming takes the weights from the checkpoint and keeps the record of the start.
    (tmp_path / "a" / "model.safetensors").unlink()
    resumed = Trainer(tiny_config("cdcgan", max_steps=2, init=str(tmp_path / "a"), d_warmup=1), sample,
                      out_dir=tmp_path / "b", resume=True)
    resumed.fit()
    assert genaug.load_generator(tmp_path / "b").provenance["init"] == tuned.provenance["init"]


def test_init_takes_a_diffusion_model_saved_with_other_sampling_settings(sample, tmp_path):
    # Guidance and sampling steps are often set in a saved card after training: they don't change
    # the weights, so a run may start from that model with its own; the network's shape must match.
    Trainer(tiny_config("cddpm", max_steps=2), sample, out_dir=tmp_path / "a").fit()
    saved = genaug.load_generator(tmp_path / "a").unet.state_dict()
    tuned_sampler = {**TINY_MODEL["diffusion"], "guidance": 0.5, "sample_steps": 3}
    trainer = Trainer(tiny_config("cddpm", max_steps=1, init=str(tmp_path / "a"), model=tuned_sampler), sample,
                      out_dir=tmp_path / "b")
    now = trainer.step_impl.nets["model"].state_dict()
    assert saved.keys() == now.keys() and all(torch.equal(saved[k], now[k]) for k in saved)
    trainer.fit()
    assert genaug.load_generator(tmp_path / "b").config.guidance == 0.5  # the run's sampler, not the saved one
    wider = {**TINY_MODEL["diffusion"], "emb_dim": 2 * TINY_MODEL["diffusion"].get("emb_dim", 128)}
    with pytest.raises(ValueError, match=r"different model config.*'emb_dim'"):
        Trainer(tiny_config("cddpm", model=wider, init=str(tmp_path / "a")), sample, out_dir=tmp_path / "c")


def test_cvae_wide_preset_is_the_ten_minute_recipe():
    # The README's ten-minute CPU run trains exactly this: the bundled cVAE's widths, kl_weight 2.
    from genaug.models.autoencoder import VAEConfig

    cfg = TrainConfig(family="cvae-wide")
    model = VAEConfig(**cfg.model_config(image_shape=(1, 28, 28), num_classes=10))
    assert model.channels == (32, 64) and model.latent_dim == 16 and model.num_classes == 10
    # Other image sizes get a stage per halving, 32 channels first.
    assert VAEConfig(**cfg.model_config(image_shape=(3, 64, 64), num_classes=10)).channels == (32, 64, 128, 256)
    assert cfg.recipe.kl_weight == 2.0 and cfg.recipe.lr == 1e-3  # 3e-3 lost classes for one seed in five
    assert TrainConfig(family="cvae-wide", model={"latent_dim": 8}).model_config(
        image_shape=(1, 28, 28), num_classes=10)["latent_dim"] == 8


def test_began_equilibrium_engages(sample, tmp_path):
    # The paper's dynamics: generated images become easier to reconstruct than gamma times the
    # real ones, so k_t leaves 0 and the discriminator starts pushing back. (With a DCGAN
    # generator and a transposed-convolution decoder k_t stayed 0 and G collapsed.)
    cfg = TrainConfig(family="began", max_steps=100, batch_size=32, progress=False, device="cpu",
                      log_every=10, tensorboard="off", checkpoint_every=0)
    hist = Trainer(cfg, sample, out_dir=tmp_path).fit().history
    assert hist[-1]["k"] > 0
    g = genaug.load_generator(tmp_path).net
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.ConvTranspose2d)) for m in g.modules())


def test_balanced_sampling_draws_every_class_equally_and_resumes_exactly(sample, tmp_path, deterministic):
    x, y = genaug.data.as_tensors(sample)
    keep = torch.cat([(y == c).nonzero().squeeze(1)[: 10 if c == 3 else None] for c in range(10)])
    data = (x[keep], y[keep])  # class 3 has 10 images, the others about 100
    trainer = Trainer(tiny_config("cvae", sampling="balanced", max_steps=1), data, out_dir=tmp_path / "o")
    order = trainer.epoch_order(0)
    assert len(order) == len(keep) and torch.equal(order, trainer.epoch_order(0))
    assert not torch.equal(order, trainer.epoch_order(1))
    share = torch.bincount(y[keep][order], minlength=10).float() / len(order)
    assert bool(((share - 0.1).abs() < 0.04).all()), share
    uniform = Trainer(tiny_config("cvae", max_steps=1), data, out_dir=tmp_path / "u").epoch_order(0)
    assert torch.equal(uniform.sort().values, torch.arange(len(keep)))
    straight = Trainer(tiny_config("cvae", sampling="balanced", max_steps=70, epochs=2), data, out_dir=tmp_path / "a")
    straight.fit()
    Trainer(tiny_config("cvae", sampling="balanced", max_steps=30, epochs=2), data, out_dir=tmp_path / "b").fit()
    resumed = Trainer(tiny_config("cvae", sampling="balanced", max_steps=70, epochs=2), data, out_dir=tmp_path / "b",
                      resume=True)
    resumed.fit()
    _assert_equal(_state(straight), _state(resumed))
    with pytest.raises(ValueError, match="sampling"):
        TrainConfig(family="cvae", sampling="weighted")
