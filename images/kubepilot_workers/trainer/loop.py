"""The built-in LoRA trainer: noise-prediction training of UNet LoRA layers, with actions between steps.

:class:`LoraTrainer` implements :class:`TrainerControl`. The action agent calls it between
optimizer steps, in the training thread, on every process (rank 0's actions are broadcast), so a
save under DeepSpeed is the collective call it has to be. ``stop`` (or SIGTERM) makes the loop
save a checkpoint and end with state Stopped.

Resuming is exact: a checkpoint holds, besides the LoRA and the optimizer, the data stream's
position and every process's random states, so a run stopped and resumed computes the losses
and the final LoRA an uninterrupted one computes. A finished run leaves a record (``completion``)
that makes a rerun in its output folder end at once instead of training on.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from kubepilot_api.common import ErrorInfo, now
from kubepilot_api.trainingrun import SamplingProgress, TrainingOutputFile
from kubepilot_api.workers.config import TrainerConfig
from kubepilot_api.workers.progress import PendingAction, TrainingReport, WorkState
from kubepilot_workers.reporting import Reporter
from kubepilot_workers.trainer import rngstate
from kubepilot_workers.trainer.agent import ActionAgent
from kubepilot_workers.trainer.batches import BatchStream, EncodedCache
from kubepilot_workers.trainer.checkpoints import (
    OutputLayout,
    TrainerState,
    latest_checkpoint,
    prepare_folder,
    read_state,
    write_state,
)
from kubepilot_workers.trainer.completion import record_completion
from kubepilot_workers.trainer.control import ActionFailed
from kubepilot_workers.trainer.dataset import scan_dataset
from kubepilot_workers.trainer.distributed import DistributedInfo, barrier, broadcast_from_main, pick_device
from kubepilot_workers.trainer.engine import DeepSpeedEngine, build_engine
from kubepilot_workers.trainer.model import add_lora, file_sha256, load_components, save_lora_file
from kubepilot_workers.trainer.progress import ProgressTracker
from kubepilot_workers.trainer.resources import ResourceProbe
from kubepilot_workers.trainer.sampling import (
    SampleRequest,
    SampleRequestError,
    build_pipeline,
    render_samples,
    sample_request,
)

log = logging.getLogger(__name__)

REPORT_EVERY_SECONDS = 0.25


class TrainingFailed(Exception):
    """Training cannot go on; ``code`` is the stable error code for the report."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class LoraTrainer:
    """One training process of the built-in trainer (rank 0 also reports and writes files)."""

    def __init__(self, config: TrainerConfig, reporter: Reporter, info: DistributedInfo) -> None:
        self.config = config
        self.hp = config.hyperparameters
        self.reporter = reporter
        self.info = info
        self.layout = OutputLayout(Path(config.outputDir), config.outputName)
        self.device = pick_device(info)
        self.step = 0
        self.micro = 0
        """Micro-batches this process has consumed (the data stream's position)."""
        self._stop_requested = False
        self._last_report = 0.0
        self._loss_sum: torch.Tensor | None = None
        self._loss_count = 0
        torch.manual_seed(self.hp.seed + info.rank)

        self.images = scan_dataset(config.datasetDir, config.captionExtension)
        self.components = load_components(config.baseModelPath)
        unet = self.components.unet.to(self.device)
        self.components.vae.to(self.device).requires_grad_(False)
        self.components.text_encoder.to(self.device).requires_grad_(False)
        if self.hp.gradientCheckpointing:
            unet.enable_gradient_checkpointing()
        self.parameters = add_lora(unet, self.hp.rank, self.hp.alpha)
        unet.train()
        self.unet = unet
        self.stream = BatchStream(
            self.images,
            self.hp.resolution,
            self.hp.bucketing,
            self.hp.batchSize,
            self.hp.seed,
            info.rank,
            info.world_size,
        )
        self.cache = EncodedCache(
            self.components.vae, self.components.text_encoder, self.components.tokenizer, self.device
        )
        self.engine = build_engine(unet, self.parameters, self.hp, config.deepspeed, self.device, info)
        self.engine_kind = "deepspeed" if isinstance(self.engine, DeepSpeedEngine) else "torch"
        steps_per_epoch = max(1, math.ceil(self.stream.per_process / self.hp.gradientAccumulationSteps))
        self.tracker = ProgressTracker(
            max_steps=self.hp.maxSteps, steps_per_epoch=steps_per_epoch, probe=ResourceProbe()
        )
        self.agent = ActionAgent(reporter, self, exchange=self._exchange)
        self._pipeline: Any = None
        if config.resumeFrom:
            self._resume(config.resumeFrom)
        elif (
            found := latest_checkpoint(self.layout, config.baseModelPath, config.datasetDir, self.engine_kind)
        ) is not None:
            log.info("found checkpoint %s of an earlier attempt; resuming from it", found)
            self._resume(str(found))

    # -- TrainerControl -------------------------------------------------------------------------

    def save(self) -> str:
        path = self._save_checkpoint(backup=False)
        return f"checkpoint at step {self.step}: {self.layout.relative(path)}"

    def backup(self) -> str:
        path = self._save_checkpoint(backup=True)
        folder = self.layout.relative(path.parent)
        return f"backup (LoRA, optimizer, schedule, step) at step {self.step}: {folder}"

    def sample(self, params: dict[str, Any]) -> str:
        try:
            request = sample_request(params, self.hp.samplePrompts, self.hp.resolution, self.hp.seed)
        except SampleRequestError as error:
            raise ActionFailed(str(error)) from error
        files = self._render(request, "custom" if params.get("prompt") else "default")
        return f"{len(files)} sample(s) at step {self.step}" + (
            f": {self.layout.relative(files[-1])}" if files else ""
        )

    def stop(self) -> str:
        self._stop_requested = True
        return f"stopping at step {self.step}: a checkpoint is saved before exit"

    def request_stop(self) -> None:
        """Ask the loop to stop at the next step boundary (the SIGTERM handler calls this)."""
        self._stop_requested = True

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> TrainingReport:
        """Train to maxSteps or until stopped; returns the final report (not yet sent)."""
        self._report(WorkState.RUNNING, f"training from step {self.step}", force=True)
        while self.step < self.hp.maxSteps:
            self._poll_actions()
            if self._should_stop():
                self._flush_losses()
                return self._finish_stopped()
            # The loss stays on the device until a report needs it: reading it every step would
            # stall the GPU queue once per step.
            loss = self._optimizer_step()
            self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
            self._loss_count += 1
            save_now = bool(self.hp.saveEverySteps) and self.step % self.hp.saveEverySteps == 0
            sample_now = bool(self.hp.sampleEverySteps) and self.step % self.hp.sampleEverySteps == 0
            if save_now or sample_now or self._report_due() or self.step >= self.hp.maxSteps:
                self._flush_losses()
            if save_now and self.step < self.hp.maxSteps:
                self._save_checkpoint(backup=False)
            if sample_now:
                self._scheduled_samples()
            self._report(WorkState.RUNNING, f"step {self.step}/{self.hp.maxSteps}")
        self._poll_actions()
        return self._finish_succeeded()

    def _flush_losses(self) -> None:
        """Record the steps' mean loss since the last flush; a non-finite loss ends training."""
        if self._loss_sum is None:
            return
        loss = float(self._loss_sum) / self._loss_count
        self._loss_sum, self._loss_count = None, 0
        if not math.isfinite(loss):
            raise TrainingFailed("LOSS_NOT_FINITE", f"loss became {loss} by step {self.step}")
        self.tracker.record_step(self.step, loss, self.engine.learning_rate())

    def _report_due(self) -> bool:
        return self.info.is_main and time.monotonic() - self._last_report >= REPORT_EVERY_SECONDS

    def _optimizer_step(self) -> torch.Tensor:
        """One optimizer step (``gradientAccumulationSteps`` micro-batches); returns the mean loss."""
        total: torch.Tensor | None = None
        accumulation = self.hp.gradientAccumulationSteps
        scheduler = self.components.noise_scheduler
        for _ in range(accumulation):
            epoch, bucket, members = self.stream.indices(self.micro)
            self.micro += 1
            batch = self.cache.batch(self.images, epoch, bucket, members)
            latents = batch.latents
            noise = torch.randn_like(latents)
            timesteps = torch.randint(
                0, scheduler.config.num_train_timesteps, (latents.shape[0],), device=latents.device
            )
            noisy = scheduler.add_noise(latents, noise, timesteps)
            if scheduler.config.prediction_type == "v_prediction":
                target = scheduler.get_velocity(latents, noise, timesteps)
            else:
                target = noise
            dtype = self.engine.input_dtype
            with self.engine.autocast():
                prediction = self.engine.model(
                    noisy.to(dtype), timesteps, encoder_hidden_states=batch.text_embeddings.to(dtype)
                ).sample
            loss = F.mse_loss(prediction.float(), target.float())
            self.engine.backward(loss)
            total = loss.detach() if total is None else total + loss.detach()
        self.step += 1
        assert total is not None  # accumulation >= 1
        return total if accumulation == 1 else total / accumulation

    def _scheduled_samples(self) -> None:
        try:
            self._render(sample_request({}, self.hp.samplePrompts, self.hp.resolution, self.hp.seed))
        except (ActionFailed, SampleRequestError, OSError, RuntimeError, ValueError) as error:
            # A preview that cannot be rendered is no reason to lose the training run.
            log.warning("scheduled samples skipped at step %d: %s", self.step, error)

    def _should_stop(self) -> bool:
        stop: bool = broadcast_from_main(self._stop_requested, self.info)
        return stop

    def _exchange(self, actions: list[PendingAction]) -> list[PendingAction]:
        shared: list[PendingAction] = broadcast_from_main(actions, self.info)
        return shared

    def _poll_actions(self) -> None:
        self.agent.poll()

    # -- saving ---------------------------------------------------------------------------------

    def _save_checkpoint(self, backup: bool) -> Path:
        """Write LoRA + resumable state at the current step (all ranks join); returns the LoRA path."""
        folder = self.layout.checkpoint_folder(self.step, backup=backup)
        if self.info.is_main:
            prepare_folder(folder)
        barrier(self.info)
        lora_state = self.engine.lora_state()
        self.engine.save_state(folder, self.info.is_main)
        # Every process its own random states; all are on disk before the state file marks the
        # checkpoint complete.
        rngstate.save(folder, self.info.rank)
        barrier(self.info)
        lora_path = folder / self.layout.lora_file_name(self.step)
        if self.info.is_main:
            save_lora_file(self.unet, lora_path, state=lora_state)
            write_state(
                folder,
                TrainerState(
                    step=self.step,
                    base_model=self.config.baseModelPath,
                    dataset=self.config.datasetDir,
                    engine=self.engine_kind,
                    lora_file=lora_path.name,
                    micro_batch=self.micro,
                    data_seed=self.stream.seed,
                    world_size=self.info.world_size,
                ),
            )
            if not backup:
                self.tracker.add_checkpoint(self.step, self.layout.relative(lora_path))
            log.info("%s saved at step %d", "backup" if backup else "checkpoint", self.step)
            self._report(
                WorkState.RUNNING,
                f"saved {'backup' if backup else 'checkpoint'} at step {self.step}",
                force=True,
            )
        barrier(self.info)
        return lora_path

    def _resume(self, resume_from: str) -> None:
        folder, state = read_state(resume_from)
        if state.engine != self.engine_kind:
            raise TrainingFailed(
                "RESUME_FAILED",
                f"checkpoint was written by the {state.engine} engine, this run uses {self.engine_kind}",
            )
        try:
            self.engine.load_state(folder)
        except (ValueError, KeyError, RuntimeError) as error:
            raise TrainingFailed("RESUME_FAILED", f"cannot resume from {folder.name}: {error}") from error
        self.step = state.step
        self._resume_position(folder, state)
        self.tracker.resume_at(state.step)
        log.info("resumed from %s at step %d", folder, state.step)

    def _resume_position(self, folder: Path, state: TrainerState) -> None:
        """Go on with the data and the random numbers where the checkpoint's run stopped.

        Called last in ``__init__``: loading the model and initialising the LoRA spend random
        numbers, and only what the checkpoint holds may decide the noise of the next step.
        """
        # Checkpoints written before the position was recorded: every step took accumulation steps.
        self.micro = (
            state.micro_batch
            if state.micro_batch is not None
            else state.step * self.hp.gradientAccumulationSteps
        )
        if state.data_seed is not None and state.data_seed != self.stream.seed:
            log.info("following the checkpoint's epoch order (seed %d)", state.data_seed)
            self.stream.reseed(state.data_seed)
        rngstate.restore(folder, self.info.rank, self.info.world_size, saved_world_size=state.world_size)

    def _output_file(self, path: Path) -> TrainingOutputFile:
        return TrainingOutputFile(
            path=self.layout.relative(path),
            sha256=file_sha256(path),
            baseModel=self.config.baseModelPath,
            dataset=self.config.datasetDir,
            step=self.step,
        )

    def _finish_succeeded(self) -> TrainingReport:
        lora_state = self.engine.lora_state()
        if self.info.is_main:
            final = save_lora_file(self.unet, self.layout.final_lora, state=lora_state)
            self.tracker.outputs = [self._output_file(final)]
        report = self.tracker.report(WorkState.SUCCEEDED, f"trained {self.step} steps")
        if self.info.is_main:
            # After the LoRA is in place: a rerun of this pod then ends at once with this report.
            record_completion(self.config, report)
        barrier(self.info)
        return report

    def _finish_stopped(self) -> TrainingReport:
        lora_path = self._save_checkpoint(backup=False)
        if self.info.is_main:
            self.tracker.outputs = [self._output_file(lora_path)]
        return self.tracker.report(WorkState.STOPPED, f"stopped at step {self.step}; checkpoint saved")

    # -- samples and reports --------------------------------------------------------------------

    def _render(self, request: SampleRequest, kind: Literal["default", "custom"] = "default") -> list[Path]:
        if not self.info.is_main:
            return []
        if (
            self.config.deepspeed is not None
            and self.config.deepspeed.enabled
            and self.config.deepspeed.zeroStage == 3
        ):
            raise ActionFailed(
                "samples are not rendered under ZeRO-3 (the UNet is partitioned across processes)"
            )
        if self._pipeline is None:
            self._pipeline = build_pipeline(self.components, self.unet)
        started = now()

        def progress(done: int, total: int) -> None:
            self.tracker.sampling = SamplingProgress(kind=kind, current=done, total=total, startedAt=started)
            self._report(WorkState.RUNNING, f"sampling {done}/{total} at step {self.step}", force=True)

        try:
            files = render_samples(
                self._pipeline,
                request,
                self.layout.samples,
                self.step,
                self.device,
                self.engine.autocast(),
                run=self.config.outputName,
                model=Path(self.config.baseModelPath).name,
                on_progress=progress,
            )
        finally:
            self.tracker.sampling = None
        if files:
            self.tracker.add_samples(
                self.layout.relative(self.layout.samples), self.layout.relative(files[-1]), len(files)
            )
            self._report(WorkState.RUNNING, f"{len(files)} sample(s) at step {self.step}", force=True)
        return files

    def _report(self, state: WorkState, message: str, force: bool = False) -> None:
        if not self.info.is_main:
            return
        moment = time.monotonic()
        if force or moment - self._last_report >= REPORT_EVERY_SECONDS:
            self._last_report = moment
            self.reporter.update(self.tracker.report(state, message))

    def failed_report(self, error: ErrorInfo) -> TrainingReport:
        """The final report for a failure during training."""
        return self.tracker.report(WorkState.FAILED, error.message, error=error)
