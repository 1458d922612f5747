"""Load the image repository with a folder of photos and report what it cost, on SQLite or on
PostgreSQL, under real gunicorn (2 workers, the real model, detection on upload):

    .venv/bin/python benchmarks/repository_load.py              # SQLite, ../shared/images/coco
    .venv/bin/python benchmarks/repository_load.py --postgres   # a local PostgreSQL
    .venv/bin/python benchmarks/repository_load.py --photos DIR --label dog

Prints the time per upload (median, p90, total), the count and latency (median of 5) of
`GET /v1/images?label=LABEL`, and the sizes of the database and of DATA_DIR's folders. The
photos are sent one at a time from one client, to loopback only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-repository"  # noqa: S105 - a throwaway token for a loopback server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def mib(size: int) -> str:
    return f"{size / 2**20:.2f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "images" / "coco")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL (scripts/postgres.sh)")
    parser.add_argument("--label", default="person")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    photos = sorted(args.photos.glob("*.jpg"))
    if not photos:
        print(f"no photos in {args.photos}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="repo-bench-", dir="/tmp"))
    os.chmod(work, 0o755)  # noqa: S103 - the postgres user must reach its folder inside
    env = {**os.environ, "API_TOKENS": TOKEN, "DATA_DIR": str(work / "data")}
    port = free_port()
    env.update(BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY=str(args.workers), INTRA_OP_THREADS="1")
    postgres = work / "postgres"
    if args.postgres:
        started = subprocess.run(
            [str(ROOT / "scripts" / "postgres.sh"), "start", str(postgres)],
            capture_output=True,
            text=True,
            check=True,
        )
        env["REPO_DB_URL"] = started.stdout.strip().splitlines()[-1].split("=", 1)[1]
    log = (work / "gunicorn.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    headers = {"X-Api-Token": TOKEN}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(url + "readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                print((work / "gunicorn.log").read_text()[-2000:], file=sys.stderr)
                return 1
            time.sleep(0.2)
        times = []
        statuses: dict[int, int] = {}
        with requests.Session() as session:
            for path in photos:
                started_at = time.perf_counter()
                answer = session.post(
                    url + "v1/images",
                    headers=headers,
                    files={"image": (path.name, path.read_bytes(), "image/jpeg")},
                    timeout=120,
                )
                times.append(time.perf_counter() - started_at)
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
            latencies = []
            count = 0
            for _ in range(5):
                started_at = time.perf_counter()
                listed = session.get(
                    url + "v1/images",
                    headers=headers,
                    params={"label": args.label, "page_size": 1000},
                    timeout=60,
                )
                latencies.append(time.perf_counter() - started_at)
                count = len(listed.json()["images"])
        data = work / "data"
        if args.postgres:
            import psycopg

            libpq = env["REPO_DB_URL"].replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(libpq) as connection:
                row = connection.execute("SELECT pg_database_size(current_database())").fetchone()
                database_size = int(row[0]) if row else 0
            database = "PostgreSQL"
        else:
            database_size = sum(p.stat().st_size for p in data.glob("repository.sqlite3*"))
            database = "SQLite"
        ordered = sorted(times)
        print(f"database: {database}, {args.workers} gunicorn workers, {len(photos)} photos")
        print(f"statuses: {statuses}")
        print(
            f"upload: median {statistics.median(times) * 1000:.0f} ms, "
            f"p90 {ordered[int(len(ordered) * 0.9) - 1] * 1000:.0f} ms, "
            f"total {sum(times):.1f} s"
        )
        print(
            f"GET /v1/images?label={args.label}: {count} images, median "
            f"{statistics.median(latencies) * 1000:.1f} ms over 5"
        )
        print(
            f"sizes: database {mib(database_size)}, "
            f"originals {mib(folder_size(data / 'originals'))}, "
            f"derived {mib(folder_size(data / 'derived'))}, photos sent "
            f"{mib(sum(p.stat().st_size for p in photos))}"
        )
        return 0
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        log.close()
        if args.postgres:
            subprocess.run(
                [str(ROOT / "scripts" / "postgres.sh"), "stop", str(postgres)], check=False
            )
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
