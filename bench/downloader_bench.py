"""Downloader throughput against curl, and resume after a kill, on a local fake Hub.

    .venv/bin/python bench/downloader_bench.py            # 4 files, 2 GB in all
    .venv/bin/python bench/downloader_bench.py --size 200M

A 4-file repository is served by ``tests.workers.hubfake`` in its own process on 127.0.0.1.
Round by round (alternating, to share page-cache and disk conditions) it is fetched by 4 parallel
``curl`` processes and by the downloader (``python -m kubepilot_workers.downloader``, 4 parallel
files, sha256-verified, blob store + hard links). Two figures compare them: process start to exit
(``curl``: its 4 processes; the downloader: interpreter start-up, imports, resolving the repository
through the Hub API and the final report included) and the server's first to last body byte of the
round (the transfer alone, from the server's own clock). Then the downloader is SIGKILLed at 50% of the
bytes and run again; the server's byte counters show what the second run fetched beyond the
missing tails of the partial files (target: 0) and how much of the complete files it fetched
again (target: 0). Everything lives in a temporary folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.workers.intake import ContractIntake  # noqa: E402

REPO_ID = "bench/model"
FILES = 4
UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3}


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B")
    if text and text[-1] in UNITS:
        return int(float(text[:-1]) * UNITS[text[-1]])
    return int(text)


def make_files(folder: Path, total: int) -> dict[str, int]:
    folder.mkdir(parents=True)
    sizes: dict[str, int] = {}
    each = total // FILES
    for index in range(FILES):
        name = f"model-{index + 1:05d}-of-{FILES:05d}.safetensors"
        with (folder / name).open("wb") as file:
            left = each
            while left:
                chunk = os.urandom(min(left, 8 * 1024 * 1024))
                file.write(chunk)
                left -= len(chunk)
        sizes[name] = each
    return sizes


def start_server(source: Path) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.workers.hubfake", "--repo", REPO_ID, "--dir", str(source)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    return server, server.stdout.readline().strip()


def stats(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/_stats", timeout=10) as response:
        result: dict[str, Any] = json.load(response)
    return result


def run_curl(base: str, names: list[str], out: Path) -> float:
    out.mkdir(parents=True)
    began = time.perf_counter()
    processes = [
        subprocess.Popen(
            ["curl", "-sS", "--fail", "-o", str(out / name), f"{base}/{REPO_ID}/resolve/main/{name}"]
        )
        for name in names
    ]
    codes = [p.wait() for p in processes]
    elapsed = time.perf_counter() - began
    if any(codes):
        raise SystemExit(f"curl failed: {codes}")
    return elapsed


class Downloader:
    """Configs and runs of the downloader against the fake, with a test intake for its reports."""

    def __init__(self, base: str, work: Path, intake: ContractIntake) -> None:
        self.base = base
        self.work = work
        self.intake = intake
        self.runs = 0

    def prepare(self, label: str) -> tuple[Path, dict[str, str], Path]:
        self.runs += 1
        root = self.work / label
        root.mkdir(parents=True, exist_ok=True)
        config = {
            "workload": {"kind": "ModelPull", "namespace": "bench", "name": label},
            "source": {"type": "HuggingFace", "huggingFace": {"repo": REPO_ID}},
            "modelsRoot": str(root / "models"),
            "targetDir": str(root / "models" / "diffusers" / "model"),
            "storeDir": str(root / "models" / ".store"),
            "huggingFaceEndpoint": self.base,
            "maxParallelFiles": FILES,
        }
        path = root / "config.json"
        path.write_text(json.dumps(config))
        token = root / "intake-token"
        token.write_text("bench")
        url = self.intake.register("bench", "modelpulls", f"{label}-{self.runs}", "bench")
        env = os.environ | {
            "KUBEPILOT_REPORT_URL": url,
            "KUBEPILOT_TOKEN_FILE": str(token),
            "KUBEPILOT_TERMINATION_MESSAGE_PATH": str(root / "termination"),
        }
        return path, env, root

    def spawn(self, label: str) -> tuple[subprocess.Popen[bytes], Path]:
        config, env, root = self.prepare(label)
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kubepilot_workers.downloader",
                "--config",
                str(config),
                "--log-level",
                "WARNING",
            ],
            env=env,
        )
        return process, root

    def timed(self, label: str) -> tuple[float, float]:
        """(start, exit) of one run on ``time.monotonic``, the clock the server stamps transfers with."""
        began = time.monotonic()
        process, root = self.spawn(label)
        if process.wait() != 0:
            raise SystemExit(f"downloader failed: {(root / 'termination').read_text()}")
        return began, time.monotonic()


def on_disk(root: Path) -> int:
    store = root / "models" / ".store"
    return sum(
        p.stat().st_size for folder in ("partial", "blobs") for p in (store / folder).glob("*") if p.is_file()
    )


def startup_seconds() -> float:
    """Median of three warm imports of what a Hub pull loads (the first run compiles bytecode).

    The CLI and the Hugging Face client: ``huggingface_hub`` is imported only for Hub sources, so
    importing the CLI alone would understate the start-up of the pull this benchmark times.
    """
    command = [
        sys.executable,
        "-c",
        "import kubepilot_workers.downloader.cli, kubepilot_workers.downloader.huggingface",
    ]
    subprocess.run(command, check=True)
    times = []
    for _ in range(3):
        began = time.perf_counter()
        subprocess.run(command, check=True)
        times.append(time.perf_counter() - began)
    return sorted(times)[1]


def transfer_span(base: str, earlier: int) -> tuple[float, float]:
    """(first body byte, last body byte) on the server's monotonic clock, over transfers after ``earlier``."""
    transfers = stats(base)["transfers"][earlier:]
    return float(min(t[3] for t in transfers)), float(max(t[4] for t in transfers))


def transfer_window(base: str, earlier: int) -> float:
    """Seconds from the first body byte the server sent to its last, over the transfers after ``earlier``."""
    first, last = transfer_span(base, earlier)
    return last - first


def resume_after_kill(downloader: Downloader, base: str, sizes: dict[str, int]) -> None:
    """Kill at 50% of the bytes, run again, and account for every byte the second run fetched."""
    with urllib.request.urlopen(
        f"{base}/api/models/{REPO_ID}/tree/main?recursive=true", timeout=10
    ) as response:
        sha_of = {entry["path"]: entry["lfs"]["oid"] for entry in json.load(response)}
    total = sum(sizes.values())
    process, root = downloader.spawn("resume")
    while on_disk(root) < total // 2:
        if process.poll() is not None:
            raise SystemExit("the downloader finished before reaching 50%; use a larger --size")
        time.sleep(0.005)
    process.kill()
    process.wait()
    store = root / "models" / ".store"
    complete = {name for name in sizes if (store / "blobs" / sha_of[name]).exists()}
    kept = {name: _size(store / "partial" / f"sha256-{sha_of[name]}.part") for name in sizes}
    print(f"killed at {on_disk(root) / total:.0%}: {len(complete)} complete, {sum(kept.values())} B in .part")
    earlier = len(stats(base)["transfers"])

    process, root = downloader.spawn("resume")
    if process.wait() != 0:
        raise SystemExit("the resumed download failed")
    again_complete = again_partial = fetched = 0
    for key, start, sent, _began, _ended in stats(base)["transfers"][earlier:]:
        name = key.removeprefix(f"{REPO_ID}/")
        fetched += sent
        if name in complete:
            again_complete += sent
        else:
            again_partial += max(0, min(kept[name], start + sent) - start)
    missing = total - sum(sizes[name] for name in complete) - sum(kept.values())
    print(f"resume fetched {fetched} B for {missing} B missing")
    print(f"re-downloaded bytes of complete files: {again_complete} (target 0)")
    print(f"re-downloaded bytes already in .part files: {again_partial} (target 0)")


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="2G", help="total bytes of the 4 files (e.g. 2G, 200M)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating curl/downloader rounds")
    parser.add_argument("--dir", default=None, help="parent of the temporary folder (default: system temp)")
    args = parser.parse_args()
    total = parse_size(args.size)
    work = Path(tempfile.mkdtemp(prefix="kubepilot-downloader-bench-", dir=args.dir))
    server: subprocess.Popen[str] | None = None
    try:
        print(f"creating {FILES} files, {total / 1e9:.2f} GB in all, in {work}")
        sizes = make_files(work / "source", total)
        server, base = start_server(work / "source")
        names = sorted(sizes)
        startup = startup_seconds()
        with ContractIntake() as intake:
            downloader = Downloader(base, work, intake)
            walls: dict[str, list[float]] = {"curl": [], "downloader": []}
            windows: dict[str, list[float]] = {"curl": [], "downloader": []}
            phases: list[tuple[float, float, float]] = []
            for round_index in range(args.rounds):
                earlier = len(stats(base)["transfers"])
                walls["curl"].append(run_curl(base, names, work / f"curl-{round_index}"))
                windows["curl"].append(transfer_window(base, earlier))
                shutil.rmtree(work / f"curl-{round_index}")
                earlier = len(stats(base)["transfers"])
                started, exited = downloader.timed(f"round-{round_index}")
                first, last = transfer_span(base, earlier)
                walls["downloader"].append(exited - started)
                windows["downloader"].append(last - first)
                phases.append((first - started, last - first, exited - last))
                shutil.rmtree(work / f"round-{round_index}")
            for title, measured in (
                ("process start to exit", walls),
                ("server's first to last byte", windows),
            ):
                print(f"{title}:")
                for client, times in measured.items():
                    print(f"  {client:<11}" + ", ".join(f"{total / t / 1e6:6.0f} MB/s" for t in times))
                ratio = min(measured["curl"]) / min(measured["downloader"])
                print(f"  best-of ratio downloader/curl: {ratio:.2f}x (target >= 0.9x)")
            print(f"downloader interpreter start-up and imports (warm): {startup:.2f}s")
            print("downloader phases per round (start to 1st byte / 1st to last byte / last byte to exit):")
            for to_first, transfer, to_exit in phases:
                print(f"  {to_first:5.2f}s / {transfer:5.2f}s / {to_exit:5.2f}s")
            resume_after_kill(downloader, base, sizes)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
