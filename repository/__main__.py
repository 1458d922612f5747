"""`python -m repository COMMAND`: the image repository's maintenance, on the database and
DATA_DIR that the service's environment names (the same variables as the service).

    migrate           bring the schema to the code's revision (the service also does it at start)
    gc                remove temp files, trash and originals no row names (--derived: the cache)
    check             report rows whose file is missing or wrong; exit status 1 if any
    detect            run detection again on stored images (--missing: only those without)

Exit status: 0 success, 1 `check` found a problem, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from config import ConfigError, ServiceConfig, load_config
from detection_types import DetectionParams
from errors import ApiError
from registry import load_registry
from repository.db import Database, database_url, upgrade
from repository.records import DetectOptions
from repository.service import Repository


def _config() -> ServiceConfig:
    # Maintenance needs no API token; everything else is read as the service reads it.
    return load_config({**os.environ, "AUTH_DISABLED": "1"})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m repository", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="upgrade the schema to the code's revision")
    gc = commands.add_parser("gc", help="remove temp files, trash and unreferenced originals")
    gc.add_argument(
        "--temp-age",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="only temp files older than this (default: %(default)s)",
    )
    gc.add_argument("--derived", action="store_true", help="also wipe the derived-image cache")
    check = commands.add_parser("check", help="report rows whose file is missing or wrong")
    check.add_argument("--hash", action="store_true", help="also verify every file's sha256")
    detect = commands.add_parser("detect", help="run detection again on stored images")
    detect.add_argument("--owner", help="only this owner's images")
    detect.add_argument("--missing", action="store_true", help="only images without a run")
    detect.add_argument("--model", help="model to run (default: MODEL_NAME)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _config()
    except ConfigError as exc:
        print(f"repository: configuration error: {exc}", file=sys.stderr)
        return 2
    assert config.data_dir is not None  # load_config always names one
    if args.command == "migrate":
        database = Database.open(database_url(config.data_dir, config.repo_db_url), 5000)
        before, after = upgrade(database.engine, config.data_dir)
        print(
            f"schema at revision {after}"
            + (f" (was {before or 'empty'})" if before != after else "")
        )
        database.dispose()
        return 0
    # Only `detect` needs the models; gc and check run where none are fetched.
    registry = load_registry(config) if args.command == "detect" else None
    repository = Repository.open(config, registry)
    try:
        if args.command == "gc":
            report = repository.gc(args.temp_age, args.derived)
            print(
                f"removed {report.temp_files} temp file(s), {report.trash_purged} trash "
                f"file(s), {report.orphans} unreferenced original(s); restored "
                f"{report.trash_restored}"
                + ("; derived cache wiped" if report.derived_removed else "")
            )
            return 0
        if args.command == "check":
            found = repository.check(args.hash)
            print(f"{found.blobs} file(s), {found.images} image(s)")
            for key, ids in found.missing:
                print(f"missing: {key} (images {', '.join(ids) or 'none'})")
            for key in found.wrong_size:
                print(f"wrong size: {key}")
            for key in found.wrong_hash:
                print(f"wrong sha256: {key}")
            for sha in found.unreferenced_blobs:
                print(f"no image uses blob {sha}")
            if found.orphan_files:
                print(f"{found.orphan_files} file(s) no row names (python -m repository gc)")
            print("ok" if found.ok else "problems found")
            return 0 if found.ok else 1
        assert registry is not None
        model = registry.resolve(args.model)
        options = DetectOptions(True, model, DetectionParams())
        done = 0
        for owner, image_id in repository.image_ids(args.owner, args.missing):
            try:
                repository.redetect(owner, image_id, options)
                done += 1
            except ApiError as exc:
                print(f"{image_id}: {exc.public_message}", file=sys.stderr)
        print(f"detected {done} image(s) with {model}")
        return 0
    finally:
        repository.database.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
