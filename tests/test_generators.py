from __future__ import annotations

import json
import re

import pytest
import torch
from helpers import tiny_generator

import genaug
from genaug.generators import Generator, LabelledConfig, LabelledGenerator

ALL = ["vae", "gan", "dcgan", "began", "diffusion", "labelled", "filtered", "mixture", "relabelled", "latent-prior"]


def labels_for(gen, n=12):
    if gen.num_classes == 0:
        return torch.full((n,), -1)
    return torch.arange(n) % gen.num_classes


def test_every_family_has_a_generator_test():
    assert set(genaug.list_families()) == set(ALL)


@pytest.mark.parametrize("family", ALL)
@pytest.mark.parametrize("num_classes", [0, 10])
def test_sample_contract(family, num_classes):
    if family in ("labelled", "filtered", "relabelled", "latent-prior") and num_classes == 0:
        pytest.skip(f"a {family} generator always has classes")
    gen = tiny_generator(family, num_classes)
    assert isinstance(gen, Generator)
    assert gen.num_classes == len(gen.classes) == num_classes
    x = gen.sample(labels_for(gen), generator=torch.Generator().manual_seed(1))
    assert x.dtype == torch.float32
    assert x.shape == (12, *gen.image_shape) == (12, 1, 28, 28)
    assert torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1


@pytest.mark.parametrize("family", ALL)
def test_same_generator_state_same_images(family):
    gen = tiny_generator(family)
    a = gen.sample(labels_for(gen), generator=torch.Generator().manual_seed(7))
    b = gen.sample(labels_for(gen), generator=torch.Generator().manual_seed(7))
    c = gen.sample(labels_for(gen), generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", ["mnist-cdcgan", "mnist-cvae"])
def test_chunked_decoding_gives_the_same_images(name, monkeypatch):
    gen = genaug.load_generator(name, device="cpu")
    labels = torch.arange(300) % 10
    whole = gen.sample(labels, generator=torch.Generator().manual_seed(3))  # 256 + 44
    monkeypatch.setattr(type(gen), "decode_chunk", 10**9)  # one pass over the whole batch
    once = gen.sample(labels, generator=torch.Generator().manual_seed(3))
    assert (whole - once).abs().max() <= 1e-6
    monkeypatch.setattr(type(gen), "decode_chunk", 128)  # 128 + 128 + 44
    assert (gen.sample(labels, generator=torch.Generator().manual_seed(3)) - once).abs().max() <= 1e-6
    z = gen.noise(300, generator=torch.Generator().manual_seed(4), truncation=1.0)
    monkeypatch.setattr(type(gen), "decode_chunk", 10**9)
    ref = gen.decode(z, labels)
    monkeypatch.setattr(type(gen), "decode_chunk", 128)
    assert (gen.decode(z, labels) - ref).abs().max() <= 1e-6


@pytest.mark.parametrize("family", ALL)
def test_save_load_round_trip(family, tmp_path):
    gen = tiny_generator(family)
    gen.save_pretrained(tmp_path / "g", provenance={"training_data": "none", "steps": 0})
    loaded = genaug.load_generator(tmp_path / "g")
    assert type(loaded) is type(gen) and loaded.classes == gen.classes
    assert loaded.provenance["training_data"] == "none"
    assert loaded.provenance["genaug_version"] == genaug.__version__
    y = labels_for(gen)
    assert torch.equal(
        gen.sample(y, generator=torch.Generator().manual_seed(3)),
        loaded.sample(y, generator=torch.Generator().manual_seed(3)),
    )


def test_truncation_scales_latents():
    gen = tiny_generator("vae")
    z1 = gen.noise(100, generator=torch.Generator().manual_seed(0), truncation=1.0)
    z5 = gen.noise(100, generator=torch.Generator().manual_seed(0), truncation=0.5)
    assert torch.allclose(z5, z1 * 0.5)


@pytest.mark.parametrize(
    ("labels", "error", "match"),
    [
        (torch.tensor([0, 10]), ValueError, r"labels must be in \[0, 9\], got values in \[0, 10\]"),
        (torch.tensor([-1]), ValueError, r"in \[0, 9\]"),
        (torch.tensor([[1, 2]]), ValueError, "1-D integer tensor"),
        (torch.tensor([1.0]), ValueError, "1-D integer tensor"),
        ([1, 2], TypeError, "torch.Tensor, got list"),
    ],
)
def test_bad_labels(labels, error, match):
    with pytest.raises(error, match=match):
        tiny_generator("dcgan").sample(labels)


def test_unconditional_requires_minus_one_labels():
    gen = tiny_generator("gan", 0)
    with pytest.raises(ValueError, match="unconditional"):
        gen.sample(torch.tensor([0, 1]))


@pytest.mark.parametrize("truncation", [0.0, -1.0, 1.5, float("nan")])
def test_bad_truncation(truncation):
    with pytest.raises(ValueError, match="truncation"):
        tiny_generator("vae").sample(torch.tensor([1]), truncation=truncation)


def test_labelled_generator_labels_with_classifier_and_confidence():
    gen = tiny_generator("labelled")
    y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 5])
    # An untrained classifier is not confident: a high bar finds nothing and says so.
    strict = LabelledGenerator(gen.base, gen.classifier, config=LabelledConfig(min_confidence=0.99, max_rounds=2))
    with pytest.raises(RuntimeError, match="could not find enough samples"):
        strict.sample(y)
    # With a bias that forces class 4, every sample of class 4 is found and others are missing.
    with torch.no_grad():
        gen.classifier.head[1].bias.zero_()
        gen.classifier.head[1].bias[4] = 100.0
    x = LabelledGenerator(gen.base, gen.classifier, config=LabelledConfig(max_rounds=1)).sample(
        torch.full((5,), 4)
    )
    assert x.shape == (5, 1, 28, 28)
    assert gen.classifier(x).argmax(1).eq(4).all()


def test_labelled_generator_rejects_conditional_base():
    with pytest.raises(ValueError, match="unconditional"):
        LabelledGenerator(tiny_generator("vae", 10), tiny_generator("labelled").classifier)


def test_judged_wrappers_refuse_a_classifier_of_another_image_shape():
    from genaug.generators import FilteredGenerator
    from genaug.models import Classifier

    cfg = tiny_generator("labelled").classifier.config.replace(image_shape=(1, 32, 32))
    with pytest.raises(ValueError, match=r"classifier expects images of shape \(1, 32, 32\), but the base "
                                         r"generator makes \(1, 28, 28\)"):
        LabelledGenerator(tiny_generator("vae", 0), Classifier(cfg))
    with pytest.raises(ValueError, match=r"judge expects images of shape \(1, 32, 32\)"):
        FilteredGenerator(tiny_generator("vae", 10), Classifier(cfg))


def test_sample_does_not_touch_global_rng():
    gen = tiny_generator("dcgan")
    state = torch.get_rng_state()
    gen.sample(torch.tensor([1, 2]), generator=torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.get_rng_state())


def test_filtered_generator_keeps_only_confident_samples():
    from genaug.generators import FilterConfig, FilteredGenerator

    base = tiny_generator("vae")
    judge = tiny_generator("filtered").judge
    with torch.no_grad():  # a judge certain that everything is a 4
        judge.head[1].bias.copy_(torch.arange(10).eq(4).float() * 100)
    gen = FilteredGenerator(base, judge, config=FilterConfig(min_confidence=0.9, max_rounds=3))
    x = gen.sample(torch.full((6,), 4), generator=torch.Generator().manual_seed(0))
    assert x.shape == (6, 1, 28, 28)
    with pytest.raises(RuntimeError, match=r"2 samples stayed below min_confidence=0.9 .* \{'3': 2\}"):
        gen.sample(torch.tensor([4, 3, 3]))
    with pytest.raises(ValueError, match="judge must have 10 classes"):
        FilteredGenerator(base, tiny_generator("labelled").classifier.__class__(
            tiny_generator("labelled").classifier.config.replace(num_classes=5)))


def test_filtered_generator_on_a_registered_base_saves_only_its_judge(tmp_path):
    # A gate over a bundled or registered generator names it in the card instead of copying its
    # weights; loading checks they are still the ones the gate was saved with.
    import json

    from genaug.generators import FilterConfig, FilteredGenerator

    base = tiny_generator("diffusion")
    base.save_pretrained(tmp_path / "base")
    name = f"test-gated-base-{tmp_path.name}"
    genaug.register_generator(name, tmp_path / "base")
    judge = tiny_generator("filtered").judge
    gen = FilteredGenerator.on_registered(name, judge, config=FilterConfig(min_confidence=0.05),
                                          sampling={"guidance": 0.5, "sample_steps": 2})
    assert gen.base.network.config.guidance == 0.5 and gen.base.network.config.sample_steps == 2
    assert all(k.startswith("judge.") for k in gen.state_dict())
    gen.save_pretrained(tmp_path / "gated")
    card = json.loads((tmp_path / "gated" / "config.json").read_text())
    assert card["base"]["registered"] == name and card["base"]["sampling"] == {"guidance": 0.5, "sample_steps": 2}
    loaded = genaug.load_generator(tmp_path / "gated")
    labels = torch.arange(10)
    assert torch.equal(loaded.sample(labels, generator=torch.Generator().manual_seed(3)),
                       gen.sample(labels, generator=torch.Generator().manual_seed(3)))
    assert loaded.base.network.config.guidance == 0.5
    with pytest.raises(ValueError, match=r"sampling may set only \['sample_steps', 'guidance', 'guidance_interval'\].*"
                                         r"got \['emb_dim'\]"):
        FilteredGenerator.on_registered(name, judge, sampling={"emb_dim": 8})
    with pytest.raises(ValueError, match="must be a registered or bundled generator name"):
        FilteredGenerator.on_registered("no-such-generator", judge)
    # The named generator retrained (other weights): the saved gate no longer loads.
    with torch.no_grad():
        next(base.parameters()).add_(1.0)
    base.save_pretrained(tmp_path / "base")
    with pytest.raises(genaug.CheckpointError, match=f"the base generator '{name}' has other weights"):
        genaug.load_generator(tmp_path / "gated")


def test_diffusion_generator_saves_the_sampler_it_was_given(tmp_path):
    base = tiny_generator("diffusion")
    tuned = type(base)(base.network, classes=base.classes, steps=2, guidance=0.75, guidance_interval=(0.2, 0.9))
    tuned.save_pretrained(tmp_path / "g")
    cfg = genaug.load_generator(tmp_path / "g").network.config
    assert (cfg.sample_steps, cfg.guidance, cfg.guidance_interval) == (2, 0.75, (0.2, 0.9))


class _Constant(genaug.BaseGenerator):
    """Images filled with ``value``, the label written into pixel (0, 0) as label / 10."""

    family = "constant"

    def __init__(self, value, num_classes=10, image_shape=(1, 28, 28)):
        super().__init__(config=None, classes=[str(i) for i in range(num_classes)], image_shape=image_shape,
                         latent_dim=2)
        self.value = value

    def _decode(self, z, labels):
        x = torch.full((len(labels), *self.image_shape), self.value)
        x[:, 0, 0, 0] = labels.float() / 10
        return x


def test_mixture_draws_components_by_weight_and_keeps_labels():
    from genaug.generators import MixtureGenerator

    mix = MixtureGenerator([_Constant(0.2), _Constant(0.9)], weights=[3, 1])
    labels = torch.arange(4000) % 10
    x = mix.sample(labels, generator=torch.Generator().manual_seed(0))
    from_second = x[:, 0, 5, 5] == 0.9
    assert torch.isin(x[:, 0, 5, 5], torch.tensor([0.2, 0.9])).all()
    assert abs(from_second.float().mean().item() - 0.25) < 0.03
    assert torch.allclose(x[:, 0, 0, 0], labels.float() / 10)  # each sample made for its own label
    only_first = MixtureGenerator([_Constant(0.2), _Constant(0.9)], weights=[1, 0])
    assert (only_first.sample(labels[:50])[:, 0, 5, 5] == 0.2).all()
    assert only_first.sample(torch.zeros(0, dtype=torch.long)).shape == (0, 1, 28, 28)


@pytest.mark.parametrize(
    "components, weights, match",
    [
        ([_Constant(0.1)], None, "at least two generators, got 1"),
        ([_Constant(0.1), _Constant(0.2, num_classes=5)], None, "same classes"),
        ([_Constant(0.1), _Constant(0.2, image_shape=(3, 28, 28))], None, r"one shape; .* \(3, 28, 28\)"),
        ([_Constant(0.1), _Constant(0.2)], [1.0], r"one weight per component \(2\), got 1"),
        ([_Constant(0.1), _Constant(0.2)], [1.0, -1.0], r"weights\[1\] must be in \[0.0, inf\], got -1.0"),
        ([_Constant(0.1), _Constant(0.2)], [0, 0], "positive sum"),
    ],
)
def test_mixture_refuses_bad_components_and_weights(components, weights, match):
    from genaug.generators import MixtureGenerator

    with pytest.raises(ValueError, match=match):
        MixtureGenerator(components, weights=weights)


def test_mixture_card_keeps_component_provenance(tmp_path):
    a, b = tiny_generator("vae"), tiny_generator("dcgan")
    a.save_pretrained(tmp_path / "a", provenance={"training_data": "set A"})
    mix = genaug.MixtureGenerator([genaug.load_generator(tmp_path / "a"), b])
    mix.save_pretrained(tmp_path / "mix")
    loaded = genaug.load_generator(tmp_path / "mix")
    card = loaded.card()
    assert [c["family"] for c in card["components"]] == ["vae", "dcgan"]
    assert card["components"][0]["provenance"]["training_data"] == "set A"
    assert loaded.config.weights == (1.0, 1.0)


# ---------------------------------------------------------------- ex-post latent prior


def test_gmm_fit_recovers_separated_clusters():
    from genaug.generators.prior import _fit_gmm

    g = torch.Generator().manual_seed(0)
    truth = torch.tensor([[-4.0, 0.0], [4.0, 1.0], [0.0, 6.0]], dtype=torch.float64)
    x = torch.cat([c + 0.5 * torch.randn(300, 2, generator=g, dtype=torch.float64) for c in truth])
    weights, means, chol = _fit_gmm(x, 3, 50, 1e-6, torch.Generator().manual_seed(1))
    order = means[:, 0].argsort()
    torch.testing.assert_close(means[order], truth[truth[:, 0].argsort()], atol=0.15, rtol=0)
    torch.testing.assert_close(weights, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.02, rtol=0)
    cov = chol @ chol.transpose(1, 2)
    torch.testing.assert_close(cov, 0.25 * torch.eye(2, dtype=torch.float64).expand(3, 2, 2), atol=0.06, rtol=0)


def test_latent_prior_is_seeded_and_saved_with_its_mixture(tmp_path):
    prior = tiny_generator("latent-prior")
    labels = torch.arange(30) % 10
    a = prior.sample(labels, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, prior.sample(labels, generator=torch.Generator().manual_seed(4)))
    assert not torch.equal(a, prior.sample(labels, generator=torch.Generator().manual_seed(5)))
    # the same VAE with its N(0, I) prior draws other images from the same seed
    assert not torch.equal(a, prior.base.sample(labels, generator=torch.Generator().manual_seed(4)))
    prior.save_pretrained(tmp_path / "p")
    loaded = genaug.BaseGenerator.from_pretrained(tmp_path / "p")
    assert type(loaded) is genaug.LatentPriorGenerator and loaded.config.components == 2
    assert torch.equal(loaded.means, prior.means) and torch.equal(loaded.chol, prior.chol)
    assert torch.equal(loaded.sample(labels, generator=torch.Generator().manual_seed(4)), a)
    assert not prior.supports_latents  # datasets draw through sample(), not N(0, I) latents
    # fitted to the encoder: each class's means differ, and covariances are positive definite
    assert not torch.allclose(prior.means[0], prior.means[1])
    assert bool((torch.linalg.eigvalsh(prior.chol @ prior.chol.transpose(-1, -2)) > 0).all())


def test_latent_prior_bad_input():
    base = tiny_generator("vae")
    x, y = torch.rand(20, 1, 28, 28), torch.arange(20) % 10
    with pytest.raises(ValueError, match="at least 3 images"):
        genaug.fit_latent_prior(base, x, y, components=3)
    with pytest.raises(ValueError, match="images must be"):
        genaug.fit_latent_prior(base, torch.rand(20, 3, 28, 28), y, components=1)
    with pytest.raises(ValueError, match="expected 20 labels"):
        genaug.fit_latent_prior(base, x, y[:5], components=1)
    with pytest.raises(TypeError, match="conditional VAEGenerator"):
        genaug.fit_latent_prior(tiny_generator("dcgan"), x, y)
    # a class whose images all encode to one latent mean (posterior collapse) is named, not fitted
    collapsed = torch.rand(20, 1, 28, 28)
    collapsed[y == 3] = 0.5
    with pytest.raises(ValueError, match=r"class\(es\) \[3\] to only \[1\] distinct latent mean"):
        genaug.fit_latent_prior(base, collapsed, y, components=2)
    with pytest.raises(TypeError, match="conditional VAEGenerator"):
        genaug.fit_latent_prior(tiny_generator("vae", 0), x, y)


def test_prior_fit_cli_fits_saves_and_refuses_bad_input(tmp_path, capsys):
    from genaug.cli import main

    out = tmp_path / "gmm"
    assert main(["prior", "fit", "--generator", "mnist-cvae", "--data", "sample", "--val-split", "0.2",
                 "--components", "2", "--iterations", "5", "--out", str(out)]) == 0
    prior = genaug.load_generator(out)
    assert type(prior) is genaug.LatentPriorGenerator and prior.config.components == 2
    card = json.loads((out / "config.json").read_text())["provenance"]
    assert card["command"].startswith("genaug ") and card["base"] == "mnist-cvae"
    assert "800 after holding out 200" in card["latent_prior"]["fitted_on"]
    assert card["base_provenance"]["training_family"] == "cvae"  # the cVAE's own training command stays
    # the same seed and data fit the same mixture
    again = tmp_path / "again"
    assert main(["prior", "fit", "--generator", "mnist-cvae", "--data", "sample", "--val-split", "0.2",
                 "--components", "2", "--iterations", "5", "--out", str(again)]) == 0
    assert torch.equal(genaug.load_generator(again).means, prior.means)
    capsys.readouterr()
    before = (out / "model.safetensors").read_bytes()
    for args, message in [
        (["--generator", "mnist-cvae", "--data", "sample", "--out", str(out)], "holds earlier output"),
        (["--generator", "mnist-cdcgan", "--data", "sample", "--out", str(tmp_path / "x")],
         "expected a conditional VAE"),
        (["--generator", "mnist-cvae", "--data", "sample", "--components", "500", "--out", str(tmp_path / "x")],
         "at least 500 images"),
        (["--generator", "mnist-cvae", "--data", "sample", "--resize", "32", "--out", str(tmp_path / "x")],
         r"holds \(1, 32, 32\) images"),
        (["--generator", "mnist-cvae", "--data", "sample", "--classes", ",".join("abcdefghij"),
          "--out", str(tmp_path / "x")], "has classes"),
    ]:
        assert main(["prior", "fit", *args]) == 2
        assert re.search(message, capsys.readouterr().err)
    assert (out / "model.safetensors").read_bytes() == before and not (tmp_path / "x").exists()


def test_with_sampling_copies_the_weights_and_sets_only_sampler_fields():
    from genaug.generators import with_sampling

    base = tiny_generator("diffusion").eval()
    steps = base.config.sample_steps
    fast = with_sampling(base, {"sample_steps": 1, "guidance": 0.5})
    assert fast is not base and fast.config.sample_steps == 1 and fast.config.guidance == 0.5
    assert base.config.sample_steps == steps  # the original is untouched
    for key, value in base.state_dict().items():
        assert torch.equal(value, fast.state_dict()[key])
    labels = torch.arange(10)
    assert torch.equal(fast.sample(labels, generator=torch.Generator().manual_seed(1)),
                       fast.sample(labels, generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(fast.sample(labels, generator=torch.Generator().manual_seed(1)),
                           base.sample(labels, generator=torch.Generator().manual_seed(1)))
    assert with_sampling(base, {}) is base
    with pytest.raises(ValueError, match=r"got \['width'\]"):
        with_sampling(base, {"width": 16})
    with pytest.raises(ValueError, match=r"sampling may set only \[\] of the generator"):
        with_sampling(tiny_generator("vae"), {"sample_steps": 2})
    with pytest.raises(TypeError, match="sampling must be a dict"):
        with_sampling(base, [("sample_steps", 2)])


def test_set_amp_samples_every_inner_generator_under_bf16_and_keeps_the_gate_float32():
    from genaug.generators import FilterConfig, FilteredGenerator

    base = tiny_generator("diffusion")
    judge = tiny_generator("filtered").judge
    gen = FilteredGenerator(base, judge, config=FilterConfig(min_confidence=0.0))
    labels = torch.arange(10)
    ref = gen.sample(labels, generator=torch.Generator().manual_seed(0))
    seen = []
    hooks = [m.register_forward_hook(lambda mod, i, o, tag=tag: seen.append((tag, o.dtype)))
             for tag, m in (("unet", base.network), ("judge", judge))]
    assert gen.set_amp("bf16") is gen and (gen.amp, base.amp) == ("bf16", "bf16")
    a = gen.sample(labels, generator=torch.Generator().manual_seed(0))
    for h in hooks:
        h.remove()
    assert {dtype for tag, dtype in seen if tag == "unet"} == {torch.bfloat16}
    assert {dtype for tag, dtype in seen if tag == "judge"} == {torch.float32}
    assert a.dtype == torch.float32 and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, gen.sample(labels, generator=torch.Generator().manual_seed(0)))  # seeded as before
    assert torch.equal(gen.set_amp("off").sample(labels, generator=torch.Generator().manual_seed(0)), ref)
    with pytest.raises(ValueError, match=r"amp must be one of \['auto', 'bf16', 'off'\], got 'fp16'"):
        gen.set_amp("fp16")


def test_bf16_decode_stays_close_to_float32():
    gen = tiny_generator("vae")
    z = torch.randn(32, gen.latent_dim, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(32) % 10
    ref = gen.decode(z, labels)
    out = gen.set_amp("bf16").decode(z, labels)
    assert out.dtype == torch.float32 and not torch.equal(out, ref)
    assert (out - ref).abs().mean() < 0.01
