"""Run by tests/test_cli.py under `accelerate launch --multi_gpu --num_processes 2` (gloo on CPU): after a few steps
of every given model, each process must hold identical weights (gradients of trained players were all-reduced) while
the processes saw different data."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import RandomImages, data_shape, tiny_recipe  # noqa: E402
from zoo import build_model  # noqa: E402
from zoo.training import Trainer, exit_process  # noqa: E402


def main(names: list[str]) -> None:
    for name in names:
        recipe = tiny_recipe(name)
        torch.manual_seed(0)  # same initial weights on every process (DDP also broadcasts them)
        trainer = Trainer(build_model(recipe), recipe, dataset=RandomImages(256, data_shape(recipe)))
        first_batch = trainer.stream.next()
        for _ in range(3):
            trainer.train_step()
        acc = trainer.accelerator
        flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
        gathered = acc.gather(flat.unsqueeze(0))
        batches = acc.gather(first_batch.flatten().unsqueeze(0))
        if acc.is_main_process:
            assert gathered.shape[0] == 2, gathered.shape
            assert torch.equal(gathered[0], gathered[1]), f"{name}: weights differ between processes"
            assert not torch.equal(batches[0], batches[1]), f"{name}: both processes read the same batch"
            print(f"DDP-CONSISTENT {name}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
    exit_process(0)
