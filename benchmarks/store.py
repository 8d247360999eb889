"""Upload and download speed of a checkpoint-like directory to S3, multipart vs single-part.

    .venv/bin/python benchmarks/store.py                 # 1 GiB, a moto S3 server on loopback
    .venv/bin/python benchmarks/store.py --size-mb 128   # quicker
    .venv/bin/python benchmarks/store.py --endpoint http://127.0.0.1:9000 --bucket bench  # MinIO

Both modes go through satk8s's own store (`S3Store.put_files` / `get_files`): multipart uses
ranged parallel parts (`multipart_chunk_mb`); single-part sends each file in one PUT and reads
it back in one GET. Both move several files at once (`max_concurrency` threads). Uploads are given the sha256 up front, as a step
commit does (it hashes while describing the output); downloads include the sha256 check every
read does. Without --endpoint, moto runs in a child process (so the client does not share
the server's GIL) on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from satk8s.store.manifest import sha256_file  # noqa: E402
from satk8s.store.s3 import S3Store  # noqa: E402
from satk8s.store.settings import S3Settings  # noqa: E402

MiB = 1 << 20
# Shares of a training checkpoint: two weight shards, optimizer state, small metadata.
LAYOUT = {
    "model-00001-of-00002.safetensors": 0.45,
    "model-00002-of-00002.safetensors": 0.35,
    "optimizer.pt": 0.19,
}
SMALL = {
    "config.json": 2_000,
    "generation_config.json": 200,
    "tokenizer.json": 700_000,
    "trainer_state.json": 30_000,
    "rng_state.pth": 15_000,
}


def make_checkpoint(root: Path, size_mb: int) -> int:
    """Random bytes (incompressible, like weights) in LAYOUT's proportions; total bytes."""
    root.mkdir(parents=True)
    budget = size_mb * MiB - sum(SMALL.values())
    for name, share in LAYOUT.items():
        remaining = int(budget * share)
        with open(root / name, "wb") as handle:
            while remaining > 0:
                block = min(remaining, 16 * MiB)
                handle.write(os.urandom(block))
                remaining -= block
    for name, size in SMALL.items():
        (root / name).write_bytes(os.urandom(size))
    return sum(p.stat().st_size for p in root.iterdir())


def _serve(queue: multiprocessing.Queue) -> None:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    queue.put(server.get_host_and_port()[1])
    while True:
        time.sleep(3600)


def start_moto() -> tuple[str, multiprocessing.Process]:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    proc = multiprocessing.Process(target=_serve, args=(queue,), daemon=True)
    proc.start()
    return f"http://127.0.0.1:{queue.get(timeout=60)}", proc


def run_mode(
    name: str, settings: S3Settings, bucket: str, src: Path, work: Path, shas: dict[str, str]
) -> tuple[float, float]:
    store = S3Store(settings)
    prefix = f"s3://{bucket}/bench/{name}"
    files = sorted(src.iterdir())
    started = time.perf_counter()
    store.put_files([(p, f"{prefix}/{p.name}", shas[p.name]) for p in files])
    upload = time.perf_counter() - started
    dest = work / f"down-{name}"
    started = time.perf_counter()
    store.get_files([(f"{prefix}/{p.name}", dest / p.name, shas[p.name]) for p in files])
    download = time.perf_counter() - started
    store.delete(o.uri for o in store.list(prefix))  # free the server's memory
    shutil.rmtree(dest)
    return upload, download


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="Directory size (MiB).")
    parser.add_argument("--endpoint", help="An S3 endpoint; default: moto on 127.0.0.1.")
    parser.add_argument("--bucket", default="satk8s-bench", help="Bucket (created if missing).")
    parser.add_argument("--chunk-mb", type=int, default=16, help="Multipart part size (MiB).")
    parser.add_argument("--concurrency", type=int, default=8, help="Transfer threads.")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()

    server = None
    if args.endpoint is None:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench-secret",
            "NO_PROXY": "127.0.0.1",
            "no_proxy": "127.0.0.1",
        }.items():
            os.environ.setdefault(name, value)
        args.endpoint, server = start_moto()
    common = {
        "endpoint_url": args.endpoint,
        "max_concurrency": args.concurrency,
        "multipart_chunk_mb": args.chunk_mb,
    }
    modes = {
        "multipart": S3Settings.from_config({**common, "multipart_threshold_mb": args.chunk_mb}),
        # Above any file here: one PUT and one GET per file (S3 allows up to 5 GiB per PUT).
        "single-part": S3Settings.from_config({**common, "multipart_threshold_mb": 5 * 1024}),
    }
    work = Path(tempfile.mkdtemp(prefix="satk8s-bench-"))
    try:
        src = work / "checkpoint"
        total = make_checkpoint(src, args.size_mb)
        started = time.perf_counter()
        shas = {p.name: sha256_file(p) for p in src.iterdir()}
        hashing = time.perf_counter() - started
        client = S3Store(modes["multipart"]).client
        if args.bucket not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
            client.create_bucket(Bucket=args.bucket)
        mb = total / 1e6
        print(
            f"{total / (1 << 30):.2f} GiB checkpoint-like directory ({len(shas)} files, largest "
            f"{max(p.stat().st_size for p in src.iterdir()) / MiB:.0f} MiB) -> {args.endpoint}"
        )
        print(
            f"{'mode':<12} {'part size':>10} {'threads':>8} {'upload MB/s':>12} {'download MB/s':>14}"
        )
        speeds = {}
        for name, settings in modes.items():
            upload, download = run_mode(name, settings, args.bucket, src, work, shas)
            speeds[name] = {"upload_mb_s": mb / upload, "download_mb_s": mb / download}
            part = f"{args.chunk_mb} MiB" if name == "multipart" else "whole file"
            print(
                f"{name:<12} {part:>10} {args.concurrency:>8} {mb / upload:>12.1f} "
                f"{mb / download:>14.1f}"
            )
        print(
            f"(sha256 of the directory, done once before upload: {mb / hashing:.0f} MB/s; "
            "downloads include the sha256 check; MB = 10^6 bytes)"
        )
        if args.json:
            args.json.write_text(json.dumps({"size_mb": mb, "modes": speeds}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if server is not None:
            server.terminate()


if __name__ == "__main__":
    main()
