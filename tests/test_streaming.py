"""Training streamed from a dataset gives the same run as training from memory."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_MODEL

from genaug.data import MNISTSample
from genaug.train import TrainConfig, Trainer


def tiny(family, **kw):
    model = TINY_MODEL["vae" if family == "cvae" else "dcgan"]
    return TrainConfig(family=family, model=model, batch_size=16, progress=False, device="cpu",
                       tensorboard="off", checkpoint_every=0, log_every=1, **kw)


def _weights(trainer):
    return {k: v.clone() for net in trainer.recipe.nets.values() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("family", ["cvae", "cdcgan"])
def test_streamed_training_equals_in_memory_training(family, tmp_path):
    sample = MNISTSample()
    a = Trainer(tiny(family, max_steps=6, data="memory"), sample, out_dir=tmp_path / "a")
    b = Trainer(tiny(family, max_steps=6, data="stream", num_workers=2), sample, out_dir=tmp_path / "b")
    assert type(b.batches).__name__ == "StreamedBatches" and type(a.batches).__name__ == "InMemoryBatches"
    assert torch.equal(a.fixed_real, b.fixed_real)
    a.fit()
    b.fit()
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_streamed_run_resumes_exactly_across_an_epoch_boundary(tmp_path):
    sample = MNISTSample()  # 62 batches of 16 per epoch
    straight = Trainer(tiny("cvae", max_steps=66, epochs=2, data="memory"), sample, out_dir=tmp_path / "a")
    straight.fit()
    Trainer(tiny("cvae", max_steps=60, epochs=2, data="stream", num_workers=0), sample, out_dir=tmp_path / "b").fit()
    resumed = Trainer(tiny("cvae", max_steps=66, epochs=2, data="stream", num_workers=0), sample,
                      out_dir=tmp_path / "b", resume=True)
    resumed.fit()
    wa, wb = _weights(straight), _weights(resumed)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_auto_streams_what_does_not_fit_the_cache(tmp_path):
    sample = MNISTSample()
    assert type(Trainer(tiny("cvae"), sample, out_dir=tmp_path).batches).__name__ == "InMemoryBatches"
    t = Trainer(tiny("cvae", cache_mb=0), sample, out_dir=tmp_path)
    assert type(t.batches).__name__ == "StreamedBatches"
