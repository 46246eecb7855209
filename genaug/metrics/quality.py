"""Quality of synthetic data, measured in a judge classifier's feature space.

FID and KID use torchmetrics with the judge as a custom feature extractor (no
Inception weights are downloaded). Precision and recall follow Kynkäänniemi et al.
(2019, k-NN manifolds); label fidelity is the share of samples the judge puts in
their intended class; TSTR trains the fixed classifier recipe on synthetic data
only and tests it on real data.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from genaug._validation import check_int
from genaug.metrics.classify import accuracy, train_classifier
from genaug.models import Classifier


class JudgeFeatures(nn.Module):
    """The judge's penultimate features, as torchmetrics' custom feature extractor."""

    def __init__(self, judge: Classifier) -> None:
        super().__init__()
        self.judge = judge.eval()
        self.num_features = judge.out_features

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.judge.features(x.float()).double()


def _batches(x: torch.Tensor, size: int = 500):
    for i in range(0, len(x), size):
        yield x[i : i + size]


def _device(judge: nn.Module) -> torch.device:
    return next(judge.parameters()).device


def fid(judge: Classifier, real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet distance between judge features of two image sets (float, [0, 1])."""
    from torchmetrics.image.fid import FrechetInceptionDistance  # optional extra: genaug[metrics]

    dev = _device(judge)
    metric = FrechetInceptionDistance(feature=JudgeFeatures(judge), normalize=True,
                                      input_img_size=tuple(real.shape[1:])).to(dev)
    for b in _batches(real):
        metric.update(b.to(dev), real=True)
    for b in _batches(fake):
        metric.update(b.to(dev), real=False)
    return float(metric.compute())


def kid(judge: Classifier, real: torch.Tensor, fake: torch.Tensor) -> tuple[float, float]:
    """Kernel distance (mean, std over subsets) between judge features."""
    from torchmetrics.image.kid import KernelInceptionDistance  # optional extra: genaug[metrics]

    dev = _device(judge)
    size = min(len(real), len(fake), 1000)
    metric = KernelInceptionDistance(feature=JudgeFeatures(judge), normalize=True, subset_size=size,
                                     subsets=20).to(dev)
    for b in _batches(real):
        metric.update(b.to(dev), real=True)
    for b in _batches(fake):
        metric.update(b.to(dev), real=False)
    mean, std = metric.compute()
    return float(mean), float(std)


@torch.no_grad()
def features(judge: Classifier, x: torch.Tensor) -> torch.Tensor:
    judge.eval()
    dev = _device(judge)
    return torch.cat([judge.features(b.to(dev)) for b in _batches(x)])


def precision_recall(real_feats: torch.Tensor, fake_feats: torch.Tensor, *, k: int = 3) -> tuple[float, float]:
    """k-NN manifold precision (fake inside the real manifold) and recall (real inside the fake one)."""

    def radii(f: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(f, f)
        return d.kthvalue(k + 1, dim=1).values  # the 0th neighbour is the point itself

    def inside(points: torch.Tensor, centres: torch.Tensor, r: torch.Tensor) -> float:
        hits = [(torch.cdist(p, centres) <= r[None]).any(dim=1) for p in _batches(points)]
        return float(torch.cat(hits).float().mean())

    return inside(fake_feats, real_feats, radii(real_feats)), inside(real_feats, fake_feats, radii(fake_feats))


@torch.no_grad()
def predict(judge: Classifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted class and its probability for each image."""
    judge.eval()
    dev = _device(judge)
    prob = torch.cat([torch.softmax(judge(b.to(dev)), dim=1).cpu() for b in _batches(x)])
    conf, pred = prob.max(dim=1)
    return pred, conf


def label_fidelity(judge: Classifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of images the judge puts in their intended class."""
    pred, _ = predict(judge, images)
    return float((pred == labels.cpu()).float().mean())


def class_coverage(judge: Classifier, images: torch.Tensor, num_classes: int) -> float:
    """Share of classes the judge finds among the images."""
    pred, _ = predict(judge, images)
    return len(pred.unique()) / num_classes


def tstr(images: torch.Tensor, labels: torch.Tensor, test: TensorDataset, *, epochs: int = 3,
         seed: int = 0, num_classes: int | None = None) -> float:
    """Train on synthetic (or any) images with the fixed recipe, test on real: accuracy."""
    k = num_classes if num_classes is not None else int(labels.max()) + 1
    clf = train_classifier(TensorDataset(images, labels.cpu()), num_classes=k,
                           image_shape=tuple(images.shape[1:]), epochs=epochs, seed=seed)
    return accuracy(clf, test)


def evaluate(
    generator: Any,
    judge: Classifier,
    real_train: tuple[torch.Tensor, torch.Tensor],
    real_test: tuple[torch.Tensor, torch.Tensor],
    *,
    per_class: int = 1000,
    seed: int = 0,
    tstr_epochs: int = 3,
    truncation: float = 1.0,
) -> dict[str, Any]:
    """The full report: judge-FID, KID, precision/recall, fidelity, coverage, TSTR, next to the
    real-vs-real floor (train sample against test set) and the real-trained reference.

    Images are float in [0, 1]; the judge's device is used throughout. An unconditional
    generator (``num_classes == 0``) draws ``per_class * k`` samples that the judge labels:
    its label fidelity is ``None`` (it has no intended classes) and its TSTR is that of the
    judge-labelled samples. ``truncation`` is passed to ``generator.sample``.
    """
    check_int("per_class", per_class, minimum=1)
    check_int("tstr_epochs", tstr_epochs, minimum=1)
    k = int(judge.config.num_classes)
    if generator.num_classes not in (0, k):
        raise ValueError(
            f"expected a generator of {k} classes (the judge's) or an unconditional one, "
            f"got {generator.num_classes} classes"
        )
    conditional = generator.num_classes > 0
    n = k * per_class
    labels = torch.arange(k).repeat_interleave(per_class) if conditional else torch.full((n,), -1)
    g = torch.Generator().manual_seed(seed)
    fake = torch.cat([generator.sample(b, generator=g, truncation=truncation).cpu()
                      for b in _batches(labels, 1000)])
    pred, _ = predict(judge, fake)
    if not conditional:
        labels = pred
    tx, ty = real_test
    pick = torch.randperm(len(real_train[1]), generator=torch.Generator().manual_seed(seed))[:n]
    rx, ry = real_train[0][pick], real_train[1][pick]
    test = TensorDataset(tx, ty)
    real_f, fake_f, train_f = features(judge, tx), features(judge, fake), features(judge, rx)
    # k-NN manifolds on random subsets of 5000 (samples are ordered by class).
    sub = torch.Generator().manual_seed(seed + 1)
    real_s, fake_s, train_s = (f[torch.randperm(len(f), generator=sub)[:5000].to(f.device)]
                               for f in (real_f, fake_f, train_f))
    p, r = precision_recall(real_s, fake_s)
    p_floor, r_floor = precision_recall(real_s, train_s)
    kid_mean, kid_std = kid(judge, tx, fake)
    return {
        "fid": fid(judge, tx, fake),
        "fid_real_vs_real": fid(judge, tx, rx),
        "kid": kid_mean,
        "kid_std": kid_std,
        "precision": p,
        "recall": r,
        "precision_real_vs_real": p_floor,
        "recall_real_vs_real": r_floor,
        "label_fidelity": float((pred == labels).float().mean()) if conditional else None,
        "label_fidelity_real": label_fidelity(judge, tx, ty),
        "class_coverage": len(pred.unique()) / k,
        "tstr": tstr(fake, labels, test, epochs=tstr_epochs, seed=seed, num_classes=k),
        "trtr": tstr(rx, ry, test, epochs=tstr_epochs, seed=seed, num_classes=k),
        "samples": n,
        "truncation": truncation,
        "conditional": conditional,
    }
