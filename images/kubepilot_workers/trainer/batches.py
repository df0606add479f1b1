"""The stream of training batches: bucketed epochs, split across processes, encoded once.

The VAE and the text encoder are frozen, so each image's latents (at its bucket size) and each
caption's embedding are computed on first use and kept; later epochs only stack cached tensors.
Micro-batch ``m`` of a process is always the same batch for a given seed, which makes resuming
exact: a checkpoint records the seed and how many micro-batches were consumed, and the resumed run
goes on from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from kubepilot_workers.trainer.dataset import (
    Bucket,
    TrainingImage,
    assign_buckets,
    epoch_batches,
    load_image_tensor,
)


@dataclass
class Batch:
    """One micro-batch, ready for the UNet."""

    latents: torch.Tensor
    text_embeddings: torch.Tensor
    epoch: int


class BatchStream:
    """Micro-batches for one process of ``world_size``."""

    def __init__(
        self,
        images: list[TrainingImage],
        resolution: int,
        bucketing: bool,
        batch_size: int,
        seed: int,
        rank: int,
        world_size: int,
    ) -> None:
        self._images = images
        self._buckets = assign_buckets(images, resolution, bucketing)
        self._batch_size = batch_size
        self._seed = seed
        self._rank = rank
        self._world_size = world_size
        first = epoch_batches(images, self._buckets, batch_size, seed)
        # Every process needs the same number of micro-batches per epoch or collectives would hang.
        self.per_process = max(1, len(first) // world_size)
        self._epoch_cache: tuple[int, list[tuple[Bucket, list[int]]]] | None = None

    @property
    def buckets(self) -> dict[Bucket, list[int]]:
        return self._buckets

    @property
    def seed(self) -> int:
        """Seed of the epoch order (epoch ``e`` is shuffled with ``seed + e``)."""
        return self._seed

    def reseed(self, seed: int) -> None:
        """Follow another epoch order (a checkpoint's, when resuming a run of another seed)."""
        self._seed = seed
        self._epoch_cache = None

    def _epoch(self, epoch: int) -> list[tuple[Bucket, list[int]]]:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            batches = epoch_batches(self._images, self._buckets, self._batch_size, self._seed + epoch)
            while len(batches) < self.per_process * self._world_size:
                batches = batches + batches
            mine = batches[self._rank :: self._world_size][: self.per_process]
            self._epoch_cache = (epoch, mine)
        return self._epoch_cache[1]

    def indices(self, micro: int) -> tuple[int, Bucket, list[int]]:
        """(epoch, bucket, image indices) of this process's micro-batch number ``micro``."""
        epoch, position = divmod(micro, self.per_process)
        bucket, members = self._epoch(epoch)[position]
        return epoch, bucket, members


class EncodedCache:
    """Latents per (image, bucket) and embeddings per caption, from the frozen encoders."""

    def __init__(self, vae: Any, text_encoder: Any, tokenizer: Any, device: torch.device) -> None:
        self._vae = vae
        self._text_encoder = text_encoder
        self._tokenizer = tokenizer
        self._device = device
        self._scaling = float(getattr(vae.config, "scaling_factor", 0.18215))
        self._latents: dict[tuple[int, Bucket], torch.Tensor] = {}
        self._embeddings: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def latents(self, index: int, image: TrainingImage, bucket: Bucket) -> torch.Tensor:
        key = (index, bucket)
        cached = self._latents.get(key)
        if cached is None:
            pixels = load_image_tensor(image, bucket).unsqueeze(0).to(self._device, self._vae.dtype)
            # The distribution's mean: deterministic, so a cached latent is as good as a fresh one.
            cached = self._vae.encode(pixels).latent_dist.mean[0].float() * self._scaling
            self._latents[key] = cached
        return cached

    @torch.no_grad()
    def embedding(self, caption: str) -> torch.Tensor:
        cached = self._embeddings.get(caption)
        if cached is None:
            tokens = self._tokenizer(
                caption,
                padding="max_length",
                max_length=self._tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            )
            output = self._text_encoder(tokens.input_ids.to(self._device))
            cached = output[0][0].float()
            self._embeddings[caption] = cached
        return cached

    def batch(self, images: list[TrainingImage], epoch: int, bucket: Bucket, members: list[int]) -> Batch:
        latents = torch.stack([self.latents(i, images[i], bucket) for i in members])
        embeddings = torch.stack([self.embedding(images[i].caption) for i in members])
        return Batch(latents=latents, text_embeddings=embeddings, epoch=epoch)
