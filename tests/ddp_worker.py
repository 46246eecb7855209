"""Run under torchrun: trains a tiny cDCGAN and a tiny cVAE with DDP and saves each rank's weights."""

import sys
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))

from conftest import TINY_MODEL  # noqa: E402

from genaug.data import MNISTSample  # noqa: E402
from genaug.train import TrainConfig, Trainer  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1])
    data = sys.argv[2] if len(sys.argv) > 2 else "auto"  # "stream": read batches through a DataLoader
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    state = {}
    for family, model in (("cdcgan", "dcgan"), ("cvae", "vae")):
        cfg = TrainConfig(family=family, model=dict(TINY_MODEL[model]), batch_size=16, max_steps=6,
                          progress=False, device="cpu", tensorboard="off", checkpoint_every=0, data=data,
                          num_workers=0)
        trainer = Trainer(cfg, MNISTSample(), out_dir=out / "run" if family == "cdcgan" else out / family)
        if family == "cdcgan" and rank == 0:
            init = {f"{family}.{n}.{k}": v.clone() for n, net in trainer.step_impl.nets.items()
                    for k, v in net.state_dict().items()}
            out.mkdir(parents=True, exist_ok=True)
            save_file(init, str(out / "init.safetensors"))
        trainer.fit()
        for n, net in trainer.step_impl.nets.items():
            for k, v in net.state_dict().items():
                state[f"{family}.{n}.{k}"] = v.detach().clone().contiguous()
        if trainer.ema is not None:
            for k, v in trainer.ema.module.state_dict().items():
                state[f"{family}.ema.{k}"] = v.detach().clone().contiguous()
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / f"rank{rank}.safetensors"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
