from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from genaug.data import full_mnist_available

# Tiny architectures so every family runs in milliseconds on a CPU.
TINY_MODEL = {
    "autoencoder": {"latent_dim": 4, "channels": (4, 8)},
    "vae": {"latent_dim": 4, "channels": (4, 8)},
    "gan": {"latent_dim": 8, "g_hidden": (32, 32), "d_hidden": (16, 16)},
    "dcgan": {"latent_dim": 8, "g_dense": 32, "g_channels": (16, 8), "d_channels": (4, 8), "d_dense": 16},
    "began": {"latent_dim": 8, "g_channels": (16, 8), "d_channels": (4, 8), "d_latent": 8},
    "classifier": {"channels": (4, 8), "hidden": 16},
    "diffusion": {"width": 8, "patch": 2, "emb_dim": 16, "timesteps": 50, "sample_steps": 3},
}

GENERATOR_FAMILIES = ["vae", "gan", "dcgan", "began"]

REPO = Path(__file__).resolve().parents[1]


def full_mnist_root() -> str | None:
    for root in (os.environ.get("GENAUG_DATA"), str(REPO.parent / "shared" / "data")):
        if root and full_mnist_available(root):
            return root
    return None


@pytest.fixture
def mnist_root() -> str:
    root = full_mnist_root()
    if root is None:
        pytest.skip("full MNIST not found (set GENAUG_DATA to the folder holding MNIST/raw)")
    return root


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def saved_gen(tmp_path_factory):
    """A tiny untrained VAE generator saved to a folder (for CLI runs)."""
    from helpers import tiny_generator

    folder = tmp_path_factory.mktemp("gen") / "vae"
    tiny_generator("vae").save_pretrained(folder)
    return folder


@pytest.fixture
def deterministic():
    """Deterministic algorithms on for the test (exact-resume comparisons)."""
    old = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(old)
