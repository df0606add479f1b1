"""The downloader worker: one ModelPull's files from Hugging Face, Civitai or plain URLs.

Files are fetched into resumable ``.part`` files, verified by sha256, moved atomically into a
content-addressed blob store and linked into the model type folder (``runner`` explains the
layout). Progress goes to the operator's intake through the shared ``Reporter``.
"""
