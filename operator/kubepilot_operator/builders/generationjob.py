"""GenerationJob → the request a generator executes: over the executor API or as a one-shot Job."""

from __future__ import annotations

import posixpath

from kubepilot_api.generationjob import GenerationJob
from kubepilot_api.workers.config import GenerationRequest, GeneratorConfig, GeneratorMode, LoraFile, Workload
from kubepilot_api.workers.executor import ExecutorSubmit, ReportTarget
from kubepilot_operator.builders.common import Obj, inputs_dir, job_manifest, meta, pod_template
from kubepilot_operator.builders.upscalers import upscaler, upscalers
from kubepilot_operator.settings import Settings

PLURAL = "generationjobs"
COMPONENT = "generator"
COMMAND = ["python", "-m", "kubepilot_workers.generator"]


def output_dir(cr: Obj) -> str:
    """The job's image folder relative to the outputs volume: unique per object (uid)."""
    m = meta(cr)
    return posixpath.join("generations", m["namespace"], f"{m['name']}-{m.get('uid', '')[:8]}")


def request(settings: Settings, cr: Obj, model: str, loras: list[tuple[str, float]]) -> GenerationRequest:
    """The worker's request: ``model`` and LoRA paths relative to the models volume, made absolute."""
    job = GenerationJob.model_validate(cr)
    spec = job.spec
    models = settings.storage.models.mountPath
    outputs = settings.storage.outputs.mountPath
    inputs = spec.inputs

    def output_path(relative: str) -> str:
        return posixpath.join(outputs, relative) if relative else ""

    return GenerationRequest(
        type=spec.type,
        modelPath=posixpath.join(models, model) if model else "",
        prompt=spec.prompt,
        negativePrompt=spec.negativePrompt,
        width=spec.width,
        height=spec.height,
        count=spec.count,
        seed=spec.seed,
        steps=spec.steps,
        cfgScale=spec.cfgScale,
        sampler=spec.sampler,
        strength=spec.strength,
        loras=[LoraFile(path=posixpath.join(models, path), weight=weight) for path, weight in loras],
        image=output_path(inputs.image) if inputs else "",
        mask=output_path(inputs.mask) if inputs else "",
        images=[output_path(p) for p in inputs.images] if inputs else [],
        upscaler=upscaler(settings, spec.upscale.upscaler) if spec.upscale else "",
        upscaleFactor=spec.upscale.factor if spec.upscale else 2.0,
        workflow=spec.workflow,
        params=spec.params,
    )


def submission(
    settings: Settings, cr: Obj, generation: GenerationRequest, report_url: str, token: str
) -> ExecutorSubmit:
    job = GenerationJob.model_validate(cr)
    return ExecutorSubmit(
        jobId=meta(cr)["uid"],
        request=generation,
        outputDir=posixpath.join(settings.storage.outputs.mountPath, output_dir(cr)),
        priority=job.spec.priority,
        report=ReportTarget(url=report_url, token=token),
    )


def oneshot_config(settings: Settings, cr: Obj, generation: GenerationRequest) -> Obj:
    m = meta(cr)
    config = GeneratorConfig(
        workload=Workload(
            kind="GenerationJob", namespace=m["namespace"], name=m["name"], uid=m.get("uid", "")
        ),
        mode=GeneratorMode.ONESHOT,
        modelPath=generation.modelPath,
        modelsRoot=settings.storage.models.mountPath,
        outputsDir=posixpath.join(settings.storage.outputs.mountPath, output_dir(cr)),
        request=generation,
        upscalers=upscalers(settings),
        inputsDir=inputs_dir(settings),
    )
    return config.to_dict()


def oneshot_job(settings: Settings, cr: Obj) -> Obj:
    job = GenerationJob.model_validate(cr)
    template = pod_template(
        settings,
        cr,
        plural=PLURAL,
        component=COMPONENT,
        image=settings.images.generator,
        command=COMMAND,
        resources=job.spec.resources,
        restart_policy="Never",
        grace=10,
    )
    return job_manifest(
        cr,
        template,
        suffix="gen",
        component=COMPONENT,
        suspend=False,
        backoff_limit=0,
        deadline=job.spec.activeDeadlineSeconds,
    )
