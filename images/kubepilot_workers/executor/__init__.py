"""The executor: a queue of GenerationJobs in front of one backend, served over HTTP.

The diffusers generator server and the ComfyUI and sd.cpp adapters are backends of the same
executor, so the operator dispatches to all of them through one API
(``kubepilot_api.workers.executor``).
"""
