"""An endless, exactly resumable stream of training batches, sharded across processes.

Small splits (MNIST-sized up to ~1 GB of uint8) live as one tensor on the training device and are indexed and
normalised there, so the input pipeline costs a gather per batch and never starves a GPU. Larger splits stream
through a DataLoader. Either way the order is a seeded permutation per epoch and the state is (epoch, position), so
a resumed run sees exactly the batches the uninterrupted run would have seen.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset


def whole_split(dataset: Dataset) -> Tensor | None:
    """The whole split as one tensor if the dataset offers it (uint8 images or float vectors), else None."""
    for attr in ("as_uint8_tensor", "as_float_tensor"):
        if hasattr(dataset, attr):
            return getattr(dataset, attr)()
    return None


def to_model_range(batch: Tensor) -> Tensor:
    """uint8 images -> float in [-1, 1]; float data (toy vectors) passes through."""
    if batch.dtype == torch.uint8:
        return batch.float().div_(127.5).sub_(1.0)
    return batch.float()


def batches_per_epoch(n: int, batch_size: int, world_size: int = 1, drop_last: bool = True) -> int:
    """Batches one process draws per epoch from its shard of `n` examples (n // world_size each): whole batches
    only, or with `drop_last=False` one more, smaller, last batch (a PyTorch DataLoader's default epoch)."""
    shard = n // world_size
    return shard // batch_size if drop_last else -(-shard // batch_size)


class BatchStream:
    """Batches of `batch_size` from this process's shard of a seeded per-epoch permutation. The incomplete last
    batch of an epoch is dropped, or (drop_last=False) delivered as a smaller batch, as a DataLoader does by default.

    Args:
        dataset: map-style dataset of tensors (uint8 (C, H, W) images or float (D,) vectors).
        batch_size: per-process batch size.
        seed: permutation seed; epoch e uses seed + e.
        device: where batches are delivered.
        rank, world_size: process index and count; each process reads every world_size-th permuted index.
        on_device: "auto" (resident if the dataset offers the whole split as a tensor), "always", "never".
        num_workers: DataLoader workers for streamed splits.
        drop_last: drop the incomplete last batch of each epoch (else deliver it: 60,000 MNIST images in batches
            of 64 are 938 steps, the last of 32).
    """

    def __init__(self, dataset: Dataset, batch_size: int, *, seed: int = 0, device: torch.device | str = "cpu",
                 rank: int = 0, world_size: int = 1, on_device: str = "auto", num_workers: int = 0,
                 drop_last: bool = True):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.device = torch.device(device)
        self.rank, self.world_size, self.num_workers = rank, world_size, num_workers
        n = len(dataset)  # type: ignore[arg-type]
        self.drop_last = drop_last
        self.shard_size = n // world_size  # equal shards: every process takes the same steps per epoch
        self.batches_per_epoch = batches_per_epoch(n, batch_size, world_size, drop_last)
        if self.batches_per_epoch == 0:
            raise ValueError(f"data: {n} examples cannot fill one batch of {batch_size} on each of {world_size} "
                             f"process(es); lower data.batch_size or use a larger split")
        self.resident: Tensor | None = None
        if on_device != "never":
            self.resident = whole_split(dataset)
            if self.resident is None and on_device == "always":
                raise ValueError("data.on_device=always, but this dataset is too large to hold as one tensor; "
                                 "use on_device=auto")
            if self.resident is not None:
                self.resident = self.resident.to(self.device)
        self.epoch, self.position = 0, 0  # position = batches consumed in this epoch
        self._order: Tensor | None = None
        self._loader_iter: Iterator | None = None

    # ---- order ------------------------------------------------------------------------------------------------
    def _shard(self) -> Tensor:
        """This epoch's indices for this process: whole batches, or the whole shard when the last batch is kept."""
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(len(self.dataset), generator=g)  # type: ignore[arg-type]
        kept = self.batches_per_epoch * self.batch_size if self.drop_last else self.shard_size
        return perm[self.rank::self.world_size][:kept]

    def _start_epoch(self) -> None:
        order = self._shard()
        if self.resident is not None:
            # pinned + non_blocking: the host does not wait for the device at an epoch boundary either
            self._order = order.pin_memory().to(self.device, non_blocking=True) if self.device.type == "cuda" \
                else order
            return
        batches = [chunk.tolist() for chunk in order.split(self.batch_size)][self.position:]
        # A generator of the loader's own: creating an iterator draws its workers' base seed from it, and from the
        # global torch RNG without one, which would shift the noise of the step that opens the iterator (a resumed
        # run opens it inside a different step than the uninterrupted run).
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers, generator=generator,
                            pin_memory=self.device.type == "cuda", persistent_workers=False)
        self._loader_iter = iter(loader)

    # ---- public -----------------------------------------------------------------------------------------------
    def next(self) -> Tensor:
        """The next batch, on the device, normalised to the model range."""
        if self.position == self.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
            self._order, self._loader_iter = None, None
        if self._order is None and self._loader_iter is None:
            self._start_epoch()
        if self.resident is not None:
            start = self.position * self.batch_size
            batch = self.resident[self._order[start:start + self.batch_size]]  # type: ignore[index]
        else:
            batch = next(self._loader_iter).to(self.device, non_blocking=True)  # type: ignore[arg-type]
        self.position += 1
        return to_model_range(batch)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order, self._loader_iter = None, None
