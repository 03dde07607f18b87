"""Work split across processes, GPUs and machines: which share is mine, and waiting for the others at the end.

Why not accelerate's own helpers: generation and curation need no model replicas or gradient sync, only (1) a
deterministic split every process computes alone, so each item is done exactly once without talking to anyone,
and (2) one meeting at the end (`gather_json`, also a barrier), so the main process can merge the others' reports.

The process's place comes from the launcher's variables (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`; set by
`accelerate launch`, `torchrun` and SLURM's `srun` with them exported); without them the process is alone. They
belong to the launcher, not to synclora's configuration, so they are read here and nowhere else.
The meeting is torch.distributed over gloo (CPU sockets, works beside NCCL and without a GPU) with a long timeout:
one rank may still have hours of work when another finishes. A crashed rank ends the whole group (the launcher
stops the others); rerunning the same command resumes, because finished work is found on disk.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from synclora.errors import InputError

T = TypeVar("T")

# How long the end-of-run barrier waits for the slowest rank (a resumed run can leave one rank far behind).
BARRIER_TIMEOUT = datetime.timedelta(days=7)


@dataclass(frozen=True)
class Ranks:
    """This process's place among `world` cooperating processes (rank 0 is the main one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Ranks:
        env = os.environ if env is None else env
        try:
            rank = int(env.get("RANK", "0"))
            world = int(env.get("WORLD_SIZE", "1"))
            local = int(env.get("LOCAL_RANK", str(rank)))
        except ValueError:
            raise InputError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers when set") from None
        if world < 1 or not 0 <= rank < world:
            raise InputError(f"RANK={rank} does not fit WORLD_SIZE={world}")
        if world > 1 and not (env.get("MASTER_ADDR") and env.get("MASTER_PORT")):
            raise InputError(
                f"WORLD_SIZE is {world} but MASTER_ADDR/MASTER_PORT are not set; launch with `accelerate launch` "
                "or `torchrun`, which set them"
            )
        return cls(rank, world, local)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mine(self, items: Sequence[T]) -> list[T]:
        """My share of `items` (given in the same order to every rank): every world-th item from my rank on.

        Deterministic and balanced, and needs no communication: each item belongs to exactly one rank. Callers pass
        the *whole* sorted work list, never a list filtered by what is already done (ranks look at the disk at
        different moments, so filtered lists could disagree).
        """
        return list(items[self.rank :: self.world])

    def _group(self):
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", rank=self.rank, world_size=self.world, timeout=BARRIER_TIMEOUT)
        return dist

    def gather_json(self, data: object) -> list:
        """Every rank's `data` (JSON-able), in rank order, on every rank; a barrier too. JSON rather than
        torch's pickled objects: nothing received is ever unpickled."""
        if self.world == 1:
            return [data]
        import torch

        dist = self._group()
        payload = torch.frombuffer(bytearray(json.dumps(data, default=str).encode("utf-8")), dtype=torch.uint8)
        sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(self.world)]
        dist.all_gather(sizes, torch.tensor([payload.numel()], dtype=torch.int64))
        longest = int(max(s.item() for s in sizes))
        padded = torch.zeros(longest, dtype=torch.uint8)
        padded[: payload.numel()] = payload
        chunks = [torch.zeros(longest, dtype=torch.uint8) for _ in range(self.world)]
        dist.all_gather(chunks, padded)
        return [json.loads(bytes(c[: int(n.item())].tolist()).decode("utf-8")) for c, n in zip(chunks, sizes)]

    def close(self) -> None:
        """Leave the process group (if the barrier joined one), so the process exits cleanly."""
        if self.world == 1:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    def label(self) -> str:
        return f"rank {self.rank} of {self.world}"


def stable_int(*parts: object) -> int:
    """A 63-bit integer from `parts` that is the same in every process, machine and Python version (unlike hash())."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def write_json_atomic(path: str | Path, data: object) -> Path:
    """Write JSON so that a reader (another rank, a rerun) sees the old file or the whole new one, never half."""
    from synclora.paths import atomic_output

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:  # unique per writer, removed if the write fails or is stopped
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return path
