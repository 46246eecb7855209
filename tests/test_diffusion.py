"""The diffusion family: its schedule, its DDIM sampler, guidance and its recipe."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_MODEL
from helpers import tiny_generator

from genaug.models.diffusion import DiffusionConfig, DiffusionUNet, alpha_bars
from genaug.train import TrainConfig


def tiny_unet(**kw) -> DiffusionUNet:
    return DiffusionUNet(DiffusionConfig(**{**TINY_MODEL["diffusion"], "num_classes": 10, **kw}))


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_schedule_decreases_from_nearly_clean_to_nearly_pure_noise(schedule):
    a = alpha_bars(schedule, 1000)
    assert a.shape == (1000,) and bool((a[1:] < a[:-1]).all())
    assert a[0] > 0.99 and 0 < a[-1] < 0.01


@pytest.mark.parametrize(("field", "value", "message"), [
    ("schedule", "sqrt", r"schedule must be one of \['cosine', 'linear'\], got 'sqrt'"),
    ("prediction", "x0", r"prediction must be one of \['eps', 'v'\], got 'x0'"),
    ("sample_steps", 60, r"sample_steps must be at most timesteps \(50\), got 60"),
    ("width", 12, r"multiples of 8 .*got \(12, 24\)"),
    ("guidance", -1.0, "guidance"),
    ("guidance_interval", (0.6, 0.2), r"guidance_interval must be two numbers \(start, end\) .*got \(0.6, 0.2\)"),
    ("guidance_interval", (0.0, 1.5), r"guidance_interval must be .*<= 1.0, got \(0.0, 1.5\)"),
])
def test_config_names_the_bad_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        DiffusionConfig(**{**TINY_MODEL["diffusion"], field: value})


def test_image_size_must_fit_the_patch_and_stages():
    with pytest.raises(ValueError, match=r"divisible by 4 .*got \(1, 28, 30\)"):
        DiffusionConfig(image_shape=(1, 28, 30), patch=2, channels=(8, 16))
    assert DiffusionUNet(DiffusionConfig(image_shape=(3, 32, 32), patch=2, channels=(8, 16))) \
        (torch.randn(2, 3, 32, 32), torch.tensor([1, 2])).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_ddim_with_the_ideal_denoiser_of_one_image_returns_that_image(prediction, monkeypatch):
    # For data that is a single image x0, the best prediction at x_t is known in closed form;
    # DDIM from any starting noise must then end exactly at x0.
    unet = tiny_unet(prediction=prediction, timesteps=100, sample_steps=7)
    x0 = torch.rand(1, 1, 28, 28) * 1.6 - 0.8

    def ideal(x, t, labels=None):
        a = unet.alpha_bar[t].view(-1, 1, 1, 1)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return eps if prediction == "eps" else a.sqrt() * eps - (1 - a).sqrt() * x0

    monkeypatch.setattr(unet, "forward", ideal)
    out = unet.ddim_sample(torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0)), None)
    assert (out - x0).abs().max() < 1e-4


def test_add_noise_and_target_invert_each_other():
    unet = tiny_unet(prediction="v")
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.rand(8, 1, 28, 28, generator=g) * 2 - 1, torch.randn(8, 1, 28, 28, generator=g)
    t = torch.randint(0, 50, (8,), generator=g)
    x_t = unet.add_noise(x0, noise, t)
    a = unet.alpha_bar[t].view(-1, 1, 1, 1)
    v = unet.target(x0, noise, t)
    assert torch.allclose(a.sqrt() * x_t - (1 - a).sqrt() * v, x0, atol=1e-5)


def test_guidance_mixes_the_conditional_and_unconditional_predictions(monkeypatch):
    unet = tiny_unet()
    seen = []

    def fake(x, t, labels=None):  # predicts the label as a constant: 3 for class 3, 10 for "no class"
        seen.append(labels.clone())
        return labels.float().view(-1, 1, 1, 1).expand_as(x)

    monkeypatch.setattr(unet, "forward", fake)
    x, t, y = torch.zeros(2, 1, 28, 28), torch.tensor([0, 0]), torch.tensor([3, 3])
    unet.alpha_bar[0] = 0.5  # a fixed, simple noise level for the check
    _, eps = unet.predict(x, t, y, guidance=2.0)
    assert torch.equal(seen[-1], torch.tensor([3, 3, 10, 10]))
    # cond + w (cond - uncond) = 3 + 2 (3 - 10) = -11, before x0's clamp to [-1, 1] re-derives eps
    x0_unclamped = (x - 0.5 ** 0.5 * -11.0) / 0.5 ** 0.5
    expected = (x - 0.5 ** 0.5 * x0_unclamped.clamp(-1, 1)) / 0.5 ** 0.5
    assert torch.allclose(eps, expected)
    unet.predict(x, t, y, guidance=0.0)
    assert torch.equal(seen[-1], y)  # one pass, no unconditional half


@pytest.mark.parametrize(("interval", "guided"), [((0.0, 1.0), 7), ((0.3, 0.7), 3), ((0.0, 0.0), 1), ((0.55, 0.6), 0)])
def test_guidance_runs_only_at_the_steps_inside_its_interval(interval, guided, monkeypatch):
    # 7 DDIM steps over t = 0 .. 60 visit t / 60 = 1, 5/6, ..., 1/6, 0; two passes per guided step.
    unet = tiny_unet(timesteps=61, sample_steps=7, guidance=1.5, guidance_interval=interval)
    batches = []

    def fake(x, t, labels=None):
        batches.append((t[0].item(), labels.shape[0]))
        return torch.zeros_like(x)

    monkeypatch.setattr(unet, "forward", fake)
    unet.ddim_sample(torch.randn(2, 1, 28, 28), torch.tensor([1, 2]))
    assert [t for t, _ in batches] == [60, 50, 40, 30, 20, 10, 0]
    doubled = [t for t, n in batches if n == 4]
    assert len(doubled) == guided
    assert all(interval[0] <= t / 60 <= interval[1] for t in doubled)
    batches.clear()
    unet.ddim_sample(torch.randn(2, 1, 28, 28), torch.tensor([1, 2]), guidance_interval=(0.0, 1.0))
    assert sum(n == 4 for _, n in batches) == 7  # the call's interval overrides the config's


def test_generator_takes_a_guidance_interval_and_checks_it():
    gen = tiny_generator("diffusion")
    with pytest.raises(ValueError, match="guidance_interval must be two numbers"):
        type(gen)(gen.unet, guidance_interval=(0.9, 0.1))
    narrowed = type(gen)(gen.unet, guidance=1.0, guidance_interval=[0.2, 0.8])
    assert narrowed.guidance_interval == (0.2, 0.8)
    assert narrowed.sample(torch.tensor([0, 1])).shape == (2, 1, 28, 28)


def test_sample_is_decode_of_its_noise_and_steps_change_the_images():
    gen = tiny_generator("diffusion")
    labels = torch.arange(6)
    x = gen.sample(labels, generator=torch.Generator().manual_seed(5))
    z = gen.noise(6, generator=torch.Generator().manual_seed(5), truncation=1.0)
    assert z.shape == (6, 28 * 28) and torch.equal(gen.decode(z, labels), x)
    with torch.no_grad():  # some weight so the network's output depends on its input
        for p in gen.unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    gen.steps = 1
    one = gen.decode(z, labels)
    gen.steps = 3
    assert not torch.equal(one, gen.decode(z, labels))


def test_generator_refuses_bad_sampling_overrides():
    with pytest.raises(ValueError, match=r"sample_steps must be at most timesteps \(50\), got 500"):
        type(tiny_generator("diffusion"))(tiny_unet(), steps=500)


def test_label_dropout_one_trains_only_the_no_class_embedding():
    from genaug.train.recipes.diffusion import DiffusionRecipe

    cfg = TrainConfig(family="cddpm", model=dict(TINY_MODEL["diffusion"]), label_dropout=1.0)
    recipe = DiffusionRecipe(cfg.recipe, model="diffusion", model_config=cfg.model_config(
        image_shape=(1, 28, 28), num_classes=10))
    torch.manual_seed(0)
    for step in range(3):  # the zero-initialised layers pass no gradient to the embeddings before step 2
        out = recipe.train_step(torch.rand(8, 1, 28, 28) * 2 - 1, torch.arange(8), step)
    assert torch.isfinite(out["loss"]) and torch.isfinite(out["mse"])
    grad = recipe.nets["model"].class_emb.weight.grad
    assert grad[:10].abs().sum() == 0 and grad[10].abs().sum() > 0


def test_recipe_refuses_images_in_zero_one():
    with pytest.raises(ValueError, match=r"input_range must be 'tanh', got 'sigmoid'"):
        TrainConfig(family="cddpm", input_range="sigmoid")
