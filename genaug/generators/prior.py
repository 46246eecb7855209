"""Ex-post density estimation for VAE decoders (Ghosh et al., 2020, "From Variational to
Deterministic Autoencoders"): a per-class Gaussian mixture fitted to the encoder's means of
the training images, sampled instead of the N(0, I) prior."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from genaug._validation import check_float, check_int
from genaug.generators.base import BaseGenerator, check_classes
from genaug.generators.vae import VAEGenerator
from genaug.models.config import ModelConfig
from genaug.registry import build_from_card, register_generator_class

__all__ = ["LatentPriorConfig", "LatentPriorGenerator", "fit_latent_prior"]


@dataclasses.dataclass
class LatentPriorConfig(ModelConfig):
    """A per-class Gaussian mixture over a VAE's latent space.

    Args:
        components: mixture components per class.
        latent_dim: the VAE's latent size.
        num_classes: classes of the VAE (one mixture each).
    """

    components: int = 10
    latent_dim: int = 16
    num_classes: int = 10

    def __post_init__(self) -> None:
        check_int("components", self.components, minimum=1)
        check_int("latent_dim", self.latent_dim, minimum=1)
        check_int("num_classes", self.num_classes, minimum=1)


@register_generator_class("latent-prior")
class LatentPriorGenerator(BaseGenerator):
    """A conditional VAE's decoder sampled from a per-class Gaussian mixture prior.

    Class ``y``'s latents are drawn from its mixture (weights, means and Cholesky factors of full
    covariances, saved with the weights) and decoded by ``base``. ``truncation`` scales each
    draw's offset from its component's mean. Build it with :func:`fit_latent_prior`.

    The images are not a function of an N(0, I) latent, so ``supports_latents`` is False:
    datasets and exports draw through :meth:`sample`, seeded per block.
    """

    family = "latent-prior"
    supports_latents = False

    def __init__(self, base: VAEGenerator, *, config: LatentPriorConfig) -> None:
        if not isinstance(base, VAEGenerator):
            raise TypeError(f"base must be a VAEGenerator, got {type(base).__name__}")
        if base.num_classes != config.num_classes or base.latent_dim != config.latent_dim:
            raise ValueError(
                f"the prior is for {config.num_classes} classes and latent_dim {config.latent_dim}, "
                f"but the VAE has {base.num_classes} classes and latent_dim {base.latent_dim}"
            )
        super().__init__(config=config, classes=check_classes(base.classes, base.num_classes),
                         image_shape=base.image_shape, latent_dim=base.latent_dim)
        self.base = base
        k, m, d = config.num_classes, config.components, config.latent_dim
        self.register_buffer("weights", torch.full((k, m), 1.0 / m))
        self.register_buffer("means", torch.zeros(k, m, d))
        self.register_buffer("chol", torch.eye(d).expand(k, m, d, d).clone())

    def sample(
        self,
        labels: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        truncation: float = 1.0,
    ) -> torch.Tensor:
        labels = self.check_labels(labels)
        # The component and the offset are drawn on the generator's device (CPU by default), as
        # BaseGenerator.noise draws, so the images do not depend on the device they are made on.
        draw_device = generator.device if generator is not None else torch.device("cpu")
        comp = torch.multinomial(self.weights.to(draw_device)[labels.to(draw_device)], 1, generator=generator)
        eps = self.noise(labels.numel(), generator=generator, truncation=truncation)
        labels, comp = labels.to(self.device), comp.squeeze(1).to(self.device)
        z = self.means[labels, comp] + (self.chol[labels, comp] @ eps[:, :, None]).squeeze(2)
        return self.base.decode(z, labels)

    def card(self) -> dict[str, Any]:
        card = super().card()
        card["base"] = self.base.card()
        return card

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> LatentPriorGenerator:
        return cls(build_from_card(card["base"]), config=LatentPriorConfig.from_dict(card["config"]))


@torch.no_grad()
def fit_latent_prior(
    gen: VAEGenerator,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    components: int = 10,
    iterations: int = 100,
    seed: int = 0,
    reg_covar: float = 1e-6,
    batch_size: int = 1024,
) -> LatentPriorGenerator:
    """Fit a per-class full-covariance Gaussian mixture to ``gen``'s encoder means of ``images``.

    Args:
        gen: a conditional :class:`VAEGenerator` (its encoder is used).
        images: float (N, C, H, W) in [0, 1], the generator's image shape.
        labels: (N,) int class indices; every class needs at least ``components`` images.
        components: mixture components per class.
        iterations: EM iterations per class (from a seeded k-means++ start).
        seed: seed of the start; the same inputs and seed give the same prior.
        reg_covar: added to each covariance's diagonal.

    Example:
        >>> prior_gen = fit_latent_prior(gen, x_train, y_train, components=10)  # doctest: +SKIP
        >>> prior_gen.save_pretrained("runs/cvae-gmm")  # doctest: +SKIP
    """
    if not isinstance(gen, VAEGenerator) or gen.num_classes < 1:
        raise TypeError(f"gen must be a conditional VAEGenerator, got {type(gen).__name__}")
    check_int("components", components, minimum=1)
    check_int("iterations", iterations, minimum=1)
    check_float("reg_covar", reg_covar, low=0.0, low_open=True)
    if not isinstance(images, torch.Tensor) or tuple(images.shape[1:]) != tuple(gen.image_shape):
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a (N, {', '.join(map(str, gen.image_shape))}) tensor, got {got}")
    labels = torch.as_tensor(labels).long().cpu()
    if labels.shape != (images.shape[0],):
        raise ValueError(f"expected {images.shape[0]} labels, got shape {tuple(labels.shape)}")
    counts = torch.bincount(labels, minlength=gen.num_classes)
    if len(counts) > gen.num_classes or int(counts.min()) < components:
        raise ValueError(f"every class needs at least {components} images (components); "
                         f"got per-class counts {counts.tolist()}")
    was_training = gen.training
    gen.eval()
    try:
        mus = [gen.vae.encode(images[i:i + batch_size].float().to(gen.device),
                              labels[i:i + batch_size].to(gen.device))[0].cpu()
               for i in range(0, len(images), batch_size)]
    finally:
        gen.train(was_training)
    mu = torch.cat(mus).double()
    per_class = [mu[labels == c] for c in range(gen.num_classes)]
    # A class whose images all map to a few latent means (the VAE ignores z for it: posterior
    # collapse) has no spread to fit; say so instead of failing inside k-means++.
    distinct = {c: len(torch.unique(m, dim=0)) for c, m in enumerate(per_class)}
    few = {c: n for c, n in distinct.items() if n < components}
    if few:
        raise ValueError(
            f"the encoder maps the images of class(es) {sorted(few)} to only {sorted(set(few.values()))} distinct "
            f"latent mean(s), fewer than components={components}: the VAE ignores its latent for them "
            "(posterior collapse); retrain it (another seed or a lower lr) or fit fewer components")
    out = LatentPriorGenerator(gen, config=LatentPriorConfig(components, gen.latent_dim, gen.num_classes))
    rng = torch.Generator().manual_seed(seed)
    for c, class_mu in enumerate(per_class):
        w, m, chol = _fit_gmm(class_mu, components, iterations, reg_covar, rng)
        out.weights[c], out.means[c], out.chol[c] = w.float(), m.float(), chol.float()
    return out.to(gen.device)


def _fit_gmm(x: torch.Tensor, k: int, iterations: int, reg: float,
             rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EM for a full-covariance Gaussian mixture in float64: (weights, means, Cholesky factors)."""
    n, d = x.shape
    # k-means++ start
    centres = [x[int(torch.randint(n, (1,), generator=rng))]]
    for _ in range(1, k):
        dist = torch.cdist(x, torch.stack(centres)).min(1).values ** 2
        centres.append(x[int(torch.multinomial(dist / dist.sum(), 1, generator=rng))])
    means = torch.stack(centres)
    resp = torch.nn.functional.one_hot(torch.cdist(x, means).argmin(1), k).double()
    eye = torch.eye(d, dtype=x.dtype)
    for _ in range(iterations):
        # M step
        nk = resp.sum(0) + 1e-10
        weights = nk / n
        means = (resp.T @ x) / nk[:, None]
        diff = x[None] - means[:, None]  # (k, n, d)
        cov = torch.einsum("kn,kni,knj->kij", resp.T, diff, diff) / nk[:, None, None] + reg * eye
        chol = torch.linalg.cholesky(cov)
        # E step: log N(x | mean_k, cov_k) + log weight_k
        sol = torch.linalg.solve_triangular(chol, diff.transpose(1, 2), upper=False)  # (k, d, n)
        log_det = 2 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
        log_p = -0.5 * (sol.pow(2).sum(1) + log_det[:, None] + d * torch.log(torch.tensor(2 * torch.pi)))
        log_p = log_p.T + torch.log(weights)[None]  # (n, k)
        resp = torch.softmax(log_p, dim=1)
    return weights, means, chol
