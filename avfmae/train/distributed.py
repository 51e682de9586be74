"""Distributed helpers: ``torchrun`` set-up, rank queries, samplers, gathers
(docs/model.md §9, F10).

Launch with ``torchrun --nproc_per_node N …``; :func:`init_distributed` reads ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` and picks NCCL on GPU, gloo on CPU. Without those variables it
is a no-op and every helper behaves as a single process (rank 0 of 1).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from avfmae.train.seeding import derive_seed, seed_worker

__all__ = [
    "DistInfo",
    "init_distributed",
    "cleanup_distributed",
    "is_distributed",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "barrier",
    "to_device",
    "rank_zero_only",
    "print0",
    "setup_logging",
    "all_gather_with_grad",
    "all_reduce_mean",
    "gather_predictions",
    "ResumableDistributedSampler",
    "ShardSampler",
    "ResumableLoader",
]

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, its device and backend."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto", backend: str | None = None) -> DistInfo:
    """Initialise the default process group from torchrun's environment variables.

    ``device``: ``"auto"`` (``cuda:LOCAL_RANK`` when CUDA is available, else CPU), ``"cpu"`` or
    ``"cuda"``. ``backend`` defaults to NCCL on CUDA and gloo on CPU. Without ``WORLD_SIZE`` > 1
    in the environment nothing is initialised and a single-process :class:`DistInfo` returned.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    dev = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world <= 1:
        return DistInfo(0, 1, 0, dev, None)
    backend = backend or ("nccl" if use_cuda else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", rank=rank,
                                world_size=world, device_id=dev if use_cuda else None)
    return DistInfo(rank, world, local_rank, dev, backend)


def cleanup_distributed() -> None:
    """Destroy the default process group if there is one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def rank_zero_only(fn: Callable[..., T]) -> Callable[..., T | None]:
    """Decorator: run ``fn`` on rank 0 only (other ranks get ``None``). For logs and writes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T | None:
        return fn(*args, **kwargs) if is_main_process() else None

    return wrapper


def setup_logging(level: int = logging.INFO) -> None:
    """Root logging to stderr with the rank in each line; ranks other than 0 log warnings only."""
    rank = get_rank()
    logging.basicConfig(
        level=level if rank == 0 else max(level, logging.WARNING),
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
        force=True,
    )


@rank_zero_only
def print0(*args: Any, **kwargs: Any) -> None:
    """``print`` on rank 0 only (flushes)."""
    print(*args, flush=True, **kwargs)


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0 (rank order), keeping the gradient.

    The backward pass sums each rank's gradient into the owning rank's slice, so with DDP's
    gradient averaging the update equals single-process training on the global batch. Every rank
    must pass the same shape. Identity in a single process.
    """
    if not is_distributed():
        return x
    return _AllGatherWithGrad.apply(x)


class _AllGatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward = all-reduce (sum) of the gradient, then this rank's slice."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.rows = x.shape[0]
        parts = [torch.empty_like(x) for _ in range(get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def all_reduce_mean(x: torch.Tensor | float) -> torch.Tensor:
    """Mean of ``x`` over ranks (no gradient); a detached copy in a single process."""
    t = torch.as_tensor(x).detach().clone().float()
    if is_distributed():
        if dist.get_backend() == "nccl" and t.device.type != "cuda":
            t = t.cuda()
        dist.all_reduce(t)
        t /= get_world_size()
    return t


def gather_predictions(
    *arrays: torch.Tensor | np.ndarray | Sequence[Any], index: Any = None
) -> tuple[np.ndarray, ...]:
    """Gather per-rank arrays of possibly different lengths onto every rank, as NumPy.

    Each argument is ``(n_rank, ...)``; results are concatenated along axis 0 in rank order.
    With ``index`` (one dataset index per row), rows are sorted by index and duplicates (e.g.
    from a padding sampler) dropped, and the gathered index is returned first. Metrics computed
    on the result are those of the full set (docs/model.md F10). Uses ``all_gather_object``.
    """
    local = [_to_numpy(a) for a in arrays]
    if index is not None:
        local = [_to_numpy(index), *local]
    n = {len(a) for a in local}
    if len(n) > 1:
        raise ValueError(f"arrays to gather have different lengths {sorted(n)}")
    if is_distributed():
        parts: list[Any] = [None] * get_world_size()
        dist.all_gather_object(parts, local)
        out = [np.concatenate([p[i] for p in parts], axis=0) for i in range(len(local))]
    else:
        out = [a.copy() for a in local]
    if index is not None:
        _, first = np.unique(out[0], return_index=True)  # sorted unique indices
        out = [a[first] for a in out]
    return tuple(out)


def _to_numpy(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach()
        if a.dtype == torch.bfloat16:
            a = a.float()
        return a.cpu().numpy()
    return np.asarray(a)


class ResumableDistributedSampler(torch.utils.data.Sampler[int]):
    """Deterministic shuffling sampler with per-epoch seeding and a resumable position.

    The epoch's global order is a permutation seeded by ``(seed, epoch)`` — independent of the
    number of ranks; with ``drop_last`` it is cut to a multiple of ``num_replicas``, else padded
    by wrapping around. Rank ``r`` takes every ``num_replicas``-th index starting at ``r``, so the
    union of the ranks' k-th batches is exactly the k-th global batch of a single process with the
    same total batch (same loss trajectory).

    Resuming: the training loop calls :meth:`advance` with the number of samples it consumed
    from this rank's iterator (after each step); :meth:`state_dict` stores the epoch and the
    global number of consumed samples; after :meth:`load_state_dict` the next ``iter()`` starts
    where the interrupted epoch stopped. :meth:`set_epoch` with a new epoch resets the position
    (with the current epoch it keeps it, so a resumed loop may call it unconditionally).
    """

    def __init__(
        self,
        dataset_or_size: Any,
        *,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        self.size = dataset_or_size if isinstance(dataset_or_size, int) else len(dataset_or_size)
        self.num_replicas = get_world_size() if num_replicas is None else num_replicas
        self.rank = get_rank() if rank is None else rank
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} not in [0, {self.num_replicas})")
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        if drop_last:
            self.num_samples = self.size // self.num_replicas
        else:
            self.num_samples = math.ceil(self.size / self.num_replicas)
        self.epoch = 0
        self.position = 0

    def epoch_indices(self) -> list[int]:
        """This rank's full index list for the current epoch."""
        if self.shuffle:
            g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
            order = torch.randperm(self.size, generator=g)
        else:
            order = torch.arange(self.size)
        total = self.num_samples * self.num_replicas
        if total <= self.size:
            order = order[:total]
        else:
            order = order.repeat(math.ceil(total / max(self.size, 1)))[:total]
        return order[self.rank :: self.num_replicas].tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.position :])

    def __len__(self) -> int:
        return self.num_samples - self.position

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self.position = 0

    def advance(self, n: int) -> None:
        """Record that ``n`` more samples of this epoch were consumed on this rank."""
        self.position = min(self.position + int(n), self.num_samples)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.position * self.num_replicas,
                "seed": self.seed, "size": self.size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore epoch and position (also across a change of world size, rounding down)."""
        if int(state["size"]) != self.size or int(state["seed"]) != self.seed:
            raise ValueError(
                f"sampler state is for {state['size']} samples with seed {state['seed']}, "
                f"this sampler has {self.size} with seed {self.seed}"
            )
        self.epoch = int(state["epoch"])
        self.position = min(int(state["consumed"]) // self.num_replicas, self.num_samples)


class ShardSampler(torch.utils.data.Sampler[int]):
    """Evaluation sampler: rank ``r`` gets indices ``r, r+W, …`` in order — no padding, no
    duplicates, so :func:`gather_predictions` sees every sample exactly once."""

    def __init__(self, dataset_or_size: Any, *, num_replicas: int | None = None,
                 rank: int | None = None) -> None:
        size = dataset_or_size if isinstance(dataset_or_size, int) else len(dataset_or_size)
        world = get_world_size() if num_replicas is None else num_replicas
        r = get_rank() if rank is None else rank
        self.indices = list(range(r, size, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class ResumableLoader(torch.utils.data.DataLoader):
    """A ``DataLoader`` that never draws from the global torch RNG.

    A plain ``DataLoader`` draws its workers' base seed from the global torch RNG every time an
    iterator is created, so resuming mid-epoch (restored RNG, new iterator) would shift every
    later random draw (dropout, masks…). This one owns a generator, reseeded by
    :meth:`set_epoch` from ``(seed, epoch, rank)``, and seeds NumPy/``random`` in each worker
    (:func:`~avfmae.train.seeding.seed_worker`). For bit-exact augmentation after a mid-epoch
    resume, draw per-sample randomness from
    :func:`~avfmae.train.seeding.make_generator` ``(seed, epoch, index)`` in the dataset.
    """

    def __init__(self, dataset: Any, *, sampler: torch.utils.data.Sampler, batch_size: int,
                 seed: int = 0, num_workers: int = 0, drop_last: bool = True,
                 **kwargs: Any) -> None:
        # Page-locked batches let to_device() copy to the GPU while the step runs.
        kwargs.setdefault("pin_memory", torch.cuda.is_available())
        super().__init__(dataset, batch_size=batch_size, sampler=sampler,
                         num_workers=num_workers, drop_last=drop_last,
                         generator=torch.Generator(), worker_init_fn=seed_worker, **kwargs)
        self.seed = seed
        self.set_epoch(getattr(sampler, "epoch", 0))

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of the sampler and of the dataset (per-epoch augmentation), and reseed
        the loader's generator."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self.generator.manual_seed(derive_seed(self.seed, epoch, get_rank()))


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; from pinned memory to a GPU the copy does not block the host."""
    return tensor.to(device, non_blocking=tensor.is_pinned())
