"""The executor: a queue of GenerationJobs in front of one backend, served over HTTP.

The diffusers generator server and the ComfyUI and sd.cpp adapters are backends of the same
executor, so the operator dispatches to all of them through one API
(``kubepilot_api.workers.executor``).

- :mod:`.backend`: the ``ExecutorBackend`` protocol, ``JobContext``, ``ExecutionError``, ``Cancelled``;
- :mod:`.queue`: ``JobQueue``, one job at a time by priority then arrival, progress pushed per job;
- :mod:`.app`: ``create_app(backend) -> FastAPI``, ``serve(backend, host, port)`` and
  ``BackgroundServer`` (uvicorn on a thread, port 0 picks a free one: for tests).
"""
