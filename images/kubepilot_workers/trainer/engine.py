"""How gradients become updates: plain torch (optionally DDP) or DeepSpeed ZeRO.

Both engines take every micro-batch's loss, handle gradient accumulation, mixed precision and the
learning-rate schedule, and save/restore the optimizer and scheduler state for resuming.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch

from kubepilot_api.trainingrun import DeepSpeedConfig, Hyperparameters, MixedPrecision
from kubepilot_workers.trainer.distributed import DistributedInfo
from kubepilot_workers.trainer.model import load_trainable_state, trainable_state

log = logging.getLogger(__name__)

MAX_GRAD_NORM = 1.0
ENGINE_STATE_FILE = "engine_state.pt"
DEEPSPEED_TAG = "deepspeed"


class EngineConfigError(ValueError):
    """The precision or DeepSpeed settings cannot work here (fp16 without CUDA, offload without ZeRO-3)."""


class TrainingEngine(Protocol):
    """What the training loop needs from an optimizer stack."""

    model: Any
    """Callable like the UNet (possibly wrapped)."""
    input_dtype: torch.dtype
    """dtype of the tensors fed to ``model``."""

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """Context for the forward pass."""
        ...

    def backward(self, loss: torch.Tensor) -> bool:
        """Accumulate one micro-batch; step the optimizer at a boundary. Returns whether it stepped."""
        ...

    def learning_rate(self) -> float: ...

    def lora_state(self) -> dict[str, torch.Tensor]:
        """Full LoRA parameters on the CPU (a collective call under ZeRO-3)."""
        ...

    def save_state(self, folder: Path, is_main: bool) -> None:
        """Write optimizer + scheduler (+ LoRA) state under ``folder`` (collective for DeepSpeed)."""
        ...

    def load_state(self, folder: Path) -> None: ...


def autocast_dtype(precision: MixedPrecision, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision setting; fp16 needs CUDA."""
    if precision is MixedPrecision.BF16:
        return torch.bfloat16
    if precision is MixedPrecision.FP16:
        if device.type != "cuda":
            raise EngineConfigError("mixedPrecision fp16 needs a CUDA device; use bf16 or no on the CPU")
        return torch.float16
    return None


def _make_scheduler(optimizer: torch.optim.Optimizer, hp: Hyperparameters) -> Any:
    from diffusers.optimization import get_scheduler

    return get_scheduler(
        hp.lrScheduler.value,
        optimizer,
        num_warmup_steps=hp.warmupSteps,
        num_training_steps=hp.maxSteps,
    )


class TorchEngine:
    """AdamW + diffusers LR schedule, autocast, gradient accumulation; DDP across processes."""

    def __init__(
        self,
        unet: Any,
        parameters: list[torch.nn.Parameter],
        hp: Hyperparameters,
        device: torch.device,
        info: DistributedInfo,
    ) -> None:
        self._unet = unet
        self._parameters = parameters
        self._accumulation = hp.gradientAccumulationSteps
        self._micro = 0
        self._dtype = autocast_dtype(hp.mixedPrecision, device)
        self._device = device
        self.optimizer = torch.optim.AdamW(parameters, lr=hp.learningRate)
        self.scheduler = _make_scheduler(self.optimizer, hp)
        self._scaler = torch.amp.GradScaler("cuda") if self._dtype is torch.float16 else None
        self.model: Any = unet
        self.input_dtype = torch.float32
        if info.is_distributed:
            device_ids = [device.index] if device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(unet, device_ids=device_ids)

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if self._dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self._device.type, dtype=self._dtype)

    def backward(self, loss: torch.Tensor) -> bool:
        scaled = loss / self._accumulation
        if self._scaler is not None:
            self._scaler.scale(scaled).backward()  # type: ignore[no-untyped-call]
        else:
            scaled.backward()  # type: ignore[no-untyped-call]
        self._micro += 1
        if self._micro < self._accumulation:
            return False
        self._micro = 0
        if self._scaler is not None:
            self._scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self._parameters, MAX_GRAD_NORM)
        if self._scaler is not None:
            self._scaler.step(self.optimizer)
            self._scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return True

    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def lora_state(self) -> dict[str, torch.Tensor]:
        return trainable_state(self._unet)

    def save_state(self, folder: Path, is_main: bool) -> None:
        if not is_main:
            return
        state = {
            "lora": trainable_state(self._unet),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self._scaler.state_dict() if self._scaler is not None else None,
        }
        torch.save(state, folder / ENGINE_STATE_FILE)

    def load_state(self, folder: Path) -> None:
        file = folder / ENGINE_STATE_FILE
        if not file.is_file():
            raise ValueError(f"{folder} holds no {ENGINE_STATE_FILE}: it was not written by the plain engine")
        state = torch.load(file, map_location="cpu", weights_only=False)
        load_trainable_state(self._unet, state["lora"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self._scaler is not None and state.get("scaler"):
            self._scaler.load_state_dict(state["scaler"])


def deepspeed_config(hp: Hyperparameters, ds: DeepSpeedConfig, world_size: int) -> dict[str, Any]:
    """The DeepSpeed config dict for our settings (client optimizer, ZeRO stage, offload)."""
    zero: dict[str, Any] = {"stage": ds.zeroStage}
    if ds.offloadOptimizer and ds.zeroStage >= 1:
        zero["offload_optimizer"] = {"device": "cpu"}
    if ds.offloadParameters:
        if ds.zeroStage != 3:
            raise EngineConfigError("deepspeed.offloadParameters needs zeroStage 3")
        zero["offload_param"] = {"device": "cpu"}
    return {
        "train_micro_batch_size_per_gpu": hp.batchSize,
        "gradient_accumulation_steps": hp.gradientAccumulationSteps,
        "train_batch_size": hp.batchSize * hp.gradientAccumulationSteps * world_size,
        "gradient_clipping": MAX_GRAD_NORM,
        "zero_optimization": zero,
        # Our torch AdamW is kept under offload too: DeepSpeed's CPU Adam needs a slow JIT build.
        "zero_force_ds_cpu_optimizer": False,
        "bf16": {"enabled": hp.mixedPrecision is MixedPrecision.BF16},
        "fp16": {"enabled": hp.mixedPrecision is MixedPrecision.FP16},
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


class DeepSpeedEngine:
    """The UNet under ``deepspeed.initialize`` with ZeRO 1/2/3."""

    def __init__(
        self,
        unet: Any,
        parameters: list[torch.nn.Parameter],
        hp: Hyperparameters,
        ds: DeepSpeedConfig,
        device: torch.device,
        info: DistributedInfo,
    ) -> None:
        import deepspeed

        if hp.mixedPrecision is MixedPrecision.FP16 and device.type != "cuda":
            raise EngineConfigError("mixedPrecision fp16 needs a CUDA device; use bf16 or no on the CPU")
        self._unet = unet
        self._parameters = parameters
        self._stage = ds.zeroStage
        self._bf16 = hp.mixedPrecision is MixedPrecision.BF16
        self._device = device
        optimizer = torch.optim.AdamW(parameters, lr=hp.learningRate)
        engine, _, _, scheduler = deepspeed.initialize(
            model=unet,
            model_parameters=parameters,
            optimizer=optimizer,
            lr_scheduler=lambda opt: _make_scheduler(opt, hp),
            config=deepspeed_config(hp, ds, info.world_size),
            dist_init_required=False,
        )
        self.model: Any = engine
        self.input_dtype = {MixedPrecision.BF16: torch.bfloat16, MixedPrecision.FP16: torch.float16}.get(
            hp.mixedPrecision, torch.float32
        )
        self._engine = engine
        self._scheduler = scheduler

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        # DeepSpeed holds the module in bf16 itself; autocast keeps the inputs' ops consistent.
        if self._bf16:
            return torch.autocast(device_type=self._device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> bool:
        boundary = bool(self._engine.is_gradient_accumulation_boundary())
        self._engine.backward(loss)
        self._engine.step()
        return boundary

    def learning_rate(self) -> float:
        return float(self._engine.get_lr()[0])

    def lora_state(self) -> dict[str, torch.Tensor]:
        with self._gathered():
            return trainable_state(self._unet)

    @contextlib.contextmanager
    def _gathered(self) -> Iterator[None]:
        if self._stage == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(self._parameters, modifier_rank=None):
                yield
        else:
            yield

    def save_state(self, folder: Path, is_main: bool) -> None:
        self._engine.save_checkpoint(str(folder), tag=DEEPSPEED_TAG)

    def load_state(self, folder: Path) -> None:
        if not (folder / DEEPSPEED_TAG).is_dir():
            raise ValueError(f"{folder} holds no DeepSpeed checkpoint ({DEEPSPEED_TAG}/)")
        path, _ = self._engine.load_checkpoint(
            str(folder), tag=DEEPSPEED_TAG, load_optimizer_states=True, load_lr_scheduler_states=True
        )
        if path is None:
            raise ValueError(f"DeepSpeed could not load the checkpoint in {folder}")


def build_engine(
    unet: Any,
    parameters: list[torch.nn.Parameter],
    hp: Hyperparameters,
    ds: DeepSpeedConfig | None,
    device: torch.device,
    info: DistributedInfo,
) -> TrainingEngine:
    """The engine the config asks for."""
    if ds is not None and ds.enabled:
        if device.type == "cpu":
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        return DeepSpeedEngine(unet, parameters, hp, ds, device, info)
    return TorchEngine(unet, parameters, hp, device, info)
