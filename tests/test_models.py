from __future__ import annotations

import pytest
import torch
from conftest import TINY_MODEL

import genaug
from genaug.models import (
    BEGANConfig,
    DCGANConfig,
    GANConfig,
    MinibatchDiscrimination,
    VAEConfig,
    build_model,
    layers,
    list_models,
    make_config,
)
from genaug.models.autoencoder import VAE
from genaug.models.layers import ConvTranspose2d, stride2_stages

X = torch.rand(4, 1, 28, 28)
Y = torch.tensor([0, 3, 9, 3])


def test_every_family_is_registered():
    assert set(list_models()) == {"autoencoder", "vae", "gan", "dcgan", "began", "classifier", "ssgan", "diffusion"}


@pytest.mark.parametrize("family", ["autoencoder", "vae", "gan", "dcgan", "began", "classifier"])
def test_default_config_builds_source_architecture(family):
    model = build_model(family)
    assert sum(p.numel() for p in model.parameters()) > 0
    cfg = model.config
    assert type(cfg).from_dict(cfg.to_dict()) == cfg


def test_autoencoder_matches_source_shapes():
    ae = build_model("autoencoder")
    convs = [m for m in ae.encoder_trunk.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(16, (5, 5), (2, 2)), (32, (5, 5), (2, 2))]
    assert ae.encode(X).shape == (4, 20)
    assert ae(X).shape == X.shape


def test_mlp_gan_matches_source_widths():
    gan = build_model("gan")
    g = [m.out_features for m in gan.generator.modules() if isinstance(m, torch.nn.Linear)]
    d = [m.out_features for m in gan.discriminator.modules() if isinstance(m, torch.nn.Linear)]
    assert g == [1024, 1024, 784]
    assert d == [256, 256, 1]
    assert gan.generator.net[0].in_features == 100


@pytest.mark.parametrize("family", ["vae", "gan", "dcgan", "began"])
@pytest.mark.parametrize("num_classes", [0, 10])
def test_forward_shapes(family, num_classes):
    model = build_model(family, {**TINY_MODEL[family], "num_classes": num_classes})
    y = Y if num_classes else None
    if family == "vae":
        logits, mu, logvar = model(X, y)
        assert logits.shape == X.shape and mu.shape == logvar.shape == (4, 4)
        return
    z = torch.randn(4, model.config.latent_dim)
    fake = model.generator(z, y)
    assert fake.shape == X.shape
    assert fake.min() >= -1 and fake.max() <= 1
    out = model.discriminator(fake, y)
    assert out.shape == ((4,) if family != "began" else X.shape)


@pytest.mark.parametrize("arch", ["pool", "strided"])
@pytest.mark.parametrize("conditioning", ["concat", "projection"])
def test_dcgan_discriminators(arch, conditioning):
    cfg = {**TINY_MODEL["dcgan"], "d_arch": arch, "num_classes": 10, "conditioning": conditioning,
           "d_norm": "batch"}
    d = build_model("dcgan", cfg).discriminator
    assert d(X, Y).shape == (4,)
    if conditioning == "projection":
        assert d.head.embed is not None
        # The label changes the logit through the projection term.
        assert not torch.allclose(d(X, Y), d(X, (Y + 1) % 10))


def test_projection_logits_start_small():
    # A fresh discriminator is near chance; a large projection term would saturate its loss.
    torch.manual_seed(0)
    cfg = {"num_classes": 10, "conditioning": "projection", "d_arch": "strided", "d_channels": (64, 128),
           "d_dense": 0, "d_norm": "batch"}
    x, y = torch.rand(64, 1, 28, 28) * 2 - 1, torch.arange(64) % 10
    assert build_model("dcgan", cfg).discriminator(x, y).std() < 5


def test_strided_discriminator_has_no_pooling():
    d = build_model("dcgan", {"d_arch": "strided"}).discriminator
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in d.modules())
    assert any(isinstance(m, torch.nn.LeakyReLU) for m in d.modules())


def test_minibatch_discrimination_sees_collapse():
    layer = MinibatchDiscrimination(16, num_kernels=6, kernel_dim=3)
    h = torch.randn(8, 16)
    out = layer(h)
    assert out.shape == (8, 22)
    collapsed = layer(h[:1].repeat(8, 1))
    # Identical samples are maximally similar: each sees exp(0) from the 7 others.
    assert torch.allclose(collapsed[:, 16:], torch.full((8, 6), 7.0))
    assert (out[:, 16:] < 7.0).all()


def test_minibatch_discrimination_compares_within_a_class():
    layer = MinibatchDiscrimination(16, num_kernels=6, kernel_dim=3)
    h = torch.randn(1, 16).repeat(6, 1)  # six identical samples
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    o = layer(h, labels)[:, 16:]
    # Each sees exp(0) from the others of its class only: 2, 2, 2, 1, 1, 0.
    assert torch.allclose(o, torch.tensor([2.0, 2, 2, 1, 1, 0]).unsqueeze(1).expand(6, 6))


def test_conditional_discriminator_passes_labels_to_minibatch_discrimination():
    model = build_model("dcgan", {**TINY_MODEL["dcgan"], "num_classes": 3, "minibatch_features": 4})
    d = model.discriminator
    x = torch.randn(1, *d.config.image_shape).repeat(4, 1, 1, 1)
    d.eval()
    same = d.head.mbd(d.features(x, torch.zeros(4, dtype=torch.long)), torch.zeros(4, dtype=torch.long))
    assert torch.allclose(same[:, -4:], torch.full((4, 4), 3.0), atol=1e-5)
    seen = []
    handle = d.head.mbd.register_forward_hook(lambda m, args, out: seen.append(args[1]))
    d(x, torch.tensor([0, 1, 2, 0]))
    handle.remove()
    assert torch.equal(seen[0], torch.tensor([0, 1, 2, 0]))


def test_minibatch_discrimination_alive_on_a_wide_trunk():
    # The cDCGAN's trunk has 6,272 features of std ~0.6: distinct samples must still be
    # measurably similar at initialisation, and the kernel must get a gradient.
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(6272, num_kernels=50, kernel_dim=5)
    h = 0.6 * torch.randn(64, 6272)
    o = layer(h)[:, 6272:]
    assert o.mean() > 0.1
    o.sum().backward()
    assert layer.T.grad.abs().mean() > 1e-4


@pytest.mark.parametrize("family", ["gan", "dcgan"])
def test_minibatch_discrimination_in_any_discriminator(family):
    model = build_model(family, {**TINY_MODEL[family], "minibatch_features": 5})
    assert any(isinstance(m, MinibatchDiscrimination) for m in model.discriminator.modules())
    assert model.discriminator(X).shape == (4,)


def test_generator_dropout_only_in_training():
    model = build_model("gan", {**TINY_MODEL["gan"], "g_dropout": 0.5})
    z = torch.randn(4, 8)
    model.generator.eval()
    assert torch.equal(model.generator(z), model.generator(z))
    model.generator.train()
    assert not torch.equal(model.generator(z), model.generator(z))


def test_vae_reparameterisation_is_differentiable_and_finite_for_any_logvar():
    mu = torch.zeros(3, 4, requires_grad=True)
    logvar = torch.tensor([[-30.0] * 4, [0.0] * 4, [10.0] * 4], requires_grad=True)
    z = VAE.reparameterize(mu, logvar, generator=torch.Generator().manual_seed(0))
    z.sum().backward()
    assert torch.isfinite(z).all() and mu.grad is not None and logvar.grad is not None


def test_configurable_image_size_and_channels():
    vae = build_model("vae", {"image_shape": (3, 32, 32), "num_classes": 5, "latent_dim": 8})
    x = torch.rand(2, 3, 32, 32)
    logits, _, _ = vae(x, torch.tensor([0, 4]))
    assert logits.shape == x.shape
    dc = build_model("dcgan", {"image_shape": (3, 32, 32), "num_classes": 5})
    assert dc.generator(torch.randn(2, 100), torch.tensor([1, 2])).shape == (2, 3, 32, 32)


@pytest.mark.parametrize(
    ("cls", "kwargs", "field", "fragment"),
    [
        (DCGANConfig, {"d_arch": "maxout"}, "d_arch", "['pool', 'strided']"),
        (DCGANConfig, {"d_norm": "group"}, "d_norm", "['none', 'batch', 'layer']"),
        (GANConfig, {"conditioning": "film"}, "conditioning", "['concat', 'projection']"),
        (GANConfig, {"latent_dim": 0}, "latent_dim", ">= 1"),
        (GANConfig, {"g_dropout": 1.5}, "g_dropout", "[0.0, 1.0)"),
        (BEGANConfig, {"g_dropout": 0.5}, "g_dropout", "must be 0 for BEGAN"),
        (BEGANConfig, {"decoder": "unet"}, "decoder", "['compact', 'paper']"),
        (BEGANConfig, {"d_output": "sigmoid"}, "d_output", "['tanh', 'linear']"),
        (VAEConfig, {"image_shape": (1, 30, 30)}, "image_shape", "divisible by 4"),
        (VAEConfig, {"num_classes": -1}, "num_classes", ">= 0"),
        (VAEConfig, {"latent_dim": 2.5}, "latent_dim", "int"),
    ],
)
def test_bad_config_names_field_allowed_and_received(cls, kwargs, field, fragment):
    with pytest.raises(ValueError) as info:
        cls(**kwargs)
    msg = str(info.value)
    assert field in msg and fragment in msg and repr(next(iter(kwargs.values()))).strip("()") in msg


def test_unknown_config_field_and_family():
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['latent'\]"):
        make_config("vae", {"latent": 3})
    with pytest.raises(ValueError, match="unknown model family 'vqvae'"):
        build_model("vqvae")


@pytest.mark.parametrize(("shape", "stages"), [((1, 28, 28), 2), ((1, 16, 16), 2), ((3, 32, 32), 3),
                                               ((3, 64, 64), 4), ((3, 28, 36), 2), ((1, 48, 48), 3),
                                               ((1, 8, 8), 2), ((3, 128, 96), 4)])
def test_stride2_stages_follow_the_image_size(shape, stages):
    assert stride2_stages(shape) == stages
    for family in ("autoencoder", "vae", "dcgan", "began", "classifier"):
        cfg = make_config(family, {"image_shape": shape})
        assert {len(v) for k, v in cfg.to_dict().items() if k.endswith("channels")} == {stages}, family
        model = build_model(family, {"image_shape": shape, **({"num_classes": 3} if family != "autoencoder" else {})})
        if family in ("dcgan", "began"):
            labels = torch.tensor([0, 2])
            assert model.generator(torch.randn(2, cfg.latent_dim), labels).shape == (2, *shape)
            assert model.discriminator(torch.rand(2, *shape) * 2 - 1, labels).shape[0] == 2
        elif family == "classifier":
            assert model(torch.rand(2, *shape)).shape == (2, 3)
        else:
            x = torch.rand(2, *shape)
            out = model(x, torch.tensor([0, 2])) if family == "vae" else model(x)
            assert (out[0] if isinstance(out, tuple) else out).shape == (2, *shape)


def test_28x28_keeps_the_source_layer_shapes_and_widths_scale_per_stage():
    assert make_config("autoencoder", {}).channels == (16, 32)
    dc = make_config("dcgan", {})
    assert (dc.g_channels, dc.d_channels) == ((128, 64), (32, 64))
    assert make_config("classifier", {}).channels == (32, 64)
    big = make_config("dcgan", {"image_shape": (3, 64, 64), "d_width": 64})
    assert (big.g_channels, big.d_channels) == ((512, 256, 128, 64), (64, 128, 256, 512))
    # Explicit channels win; a width that contradicts them is refused; a round trip keeps both.
    explicit = make_config("dcgan", {"image_shape": (3, 64, 64), "g_channels": (32, 16)})
    assert explicit.g_channels == (32, 16) and explicit.g_width == 16
    assert make_config("dcgan", explicit.to_dict()) == explicit
    with pytest.raises(ValueError, match=r"g_width must match g_channels's last \(finest\) stage"):
        make_config("dcgan", {"g_channels": (32, 16), "g_width": 8})
    # A user's per-stage channels replace the preset's width for them (cdcgan's preset sets d_width 64).
    from genaug.train import TrainConfig

    cfg = TrainConfig(family="cdcgan", model={"d_channels": (8, 16)})
    built = make_config("dcgan", cfg.model_config(image_shape=(1, 28, 28), num_classes=10))
    assert built.d_channels == (8, 16)
    assert make_config("dcgan", TrainConfig(family="cdcgan").model_config(
        image_shape=(1, 28, 28), num_classes=10)).d_channels == (64, 128)


def test_a_shape_no_stage_count_fits_names_the_shapes_taken_and_the_resize():
    with pytest.raises(ValueError) as info:
        make_config("dcgan", {"image_shape": (3, 30, 30)})
    msg = str(info.value)
    assert "DCGANConfig.image_shape must have H and W divisible by 4 and at least 8" in msg
    assert "(3, 30, 30)" in msg and "--resize 32,32" in msg and "(3, 64, 64)" in msg
    with pytest.raises(ValueError, match=r"divisible by 8 \(3 stride-2 stages\), got \(1, 28, 28\).*--resize 32,32"):
        make_config("vae", {"image_shape": (1, 28, 28), "channels": (4, 8, 16)})


# ---------------------------------------------------------------- thin transposed convolutions


@pytest.mark.parametrize(
    ("cin", "cout", "kernel", "stride", "padding", "output_padding", "hw"),
    [
        (64, 1, 4, 2, 1, 0, (14, 14)),  # the DCGAN output layer
        (32, 3, 5, 2, 2, 1, (7, 9)),  # an RGB ConvDecoder output layer, non-square
        (8, 2, 3, 1, 1, 0, (5, 6)),
        (8, 4, 3, 3, 0, 2, (4, 4)),
        (6, 1, 4, 2, 3, 0, (9, 9)),
    ],
)
def test_thin_transposed_convolution_equals_torch(cin, cout, kernel, stride, padding, output_padding, hw):
    torch.manual_seed(0)
    layer = ConvTranspose2d(cin, cout, kernel, stride=stride, padding=padding, output_padding=output_padding)
    assert cout <= layers.THIN_OUT_CHANNELS  # the GEMM path runs
    x = torch.randn(5, cin, *hw)
    with torch.no_grad():  # the GEMM path is for inference
        ours = layer(x)
        ref = torch.nn.functional.conv_transpose2d(x, layer.weight, layer.bias, stride, padding, output_padding)
        assert ours.shape == ref.shape
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
        # channels_last input takes the copy-free view and gives the same result
        torch.testing.assert_close(layer(x.contiguous(memory_format=torch.channels_last)), ours)
    # with autograd recording, nn.ConvTranspose2d runs, and its gradients flow
    x.requires_grad_(True)
    out = layer(x)
    torch.testing.assert_close(out.detach(), ours, atol=1e-5, rtol=1e-5)
    out.sum().backward()
    assert x.grad is not None and layer.weight.grad is not None


@pytest.mark.parametrize("name", ["mnist-cdcgan", "mnist-cvae"])
def test_thin_output_layer_gives_the_same_images(name, monkeypatch):
    gen = genaug.load_generator(name, device="cpu")
    labels = torch.arange(300) % 10
    fast = gen.sample(labels, generator=torch.Generator().manual_seed(5))
    monkeypatch.setattr(layers, "THIN_OUT_CHANNELS", 0)  # every layer through nn.ConvTranspose2d
    slow = gen.sample(labels, generator=torch.Generator().manual_seed(5))
    assert (fast - slow).abs().max() <= 1e-6
    assert fast.is_contiguous()


def test_began_paper_decoder_has_two_convolutions_per_resolution_and_d_output_sets_the_squashing():
    from genaug.models.gan import BEGAN

    tiny = {**TINY_MODEL["began"], "num_classes": 10}
    for decoder, d_output in (("compact", "tanh"), ("paper", "tanh"), ("compact", "linear"), ("paper", "linear")):
        model = BEGAN(BEGANConfig(**tiny, decoder=decoder, d_output=d_output))
        convs = [m for m in model.generator.decoder.net if isinstance(m, torch.nn.Conv2d)]
        # 28x28 from 7x7: the compact layout has one per upsampling; the paper's two at each of 7, 14 and 28, then one.
        assert len(convs) == (2 if decoder == "compact" else 7)
        fake = model.generator(torch.randn(4, tiny["latent_dim"]), Y)
        assert fake.shape == (4, 1, 28, 28) and fake.abs().max() <= 1  # G keeps its tanh
        with torch.no_grad():  # push D's reconstruction far above 1: only a tanh squashes it
            model.discriminator.decoder.net[-1].bias.fill_(5.0)
        recon = model.discriminator(X, Y)
        assert recon.shape == X.shape
        assert (recon.max() > 4) == (d_output == "linear")
