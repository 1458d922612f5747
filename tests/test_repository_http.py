"""The image repository through the HTTP routes (Flask's test client, the fake detector), on
SQLite and on PostgreSQL: round trip, dedupe, ownership, conditional and range requests,
renditions and their cache, pages, deletes, and every error status of the routes."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import sqlite3
import struct
import textwrap
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from flask.testing import FlaskClient

from errors import InsufficientStorage
from repository.storage import write_all
from tests.helpers import encode_image, run_python, shared_image
from tests.repo_support import ALICE, ALICE_AUTH, BOB_AUTH, sqlite_only

JPEG = encode_image(320, 240, ".jpg", seed=3)
PNG = encode_image(200, 100, ".png", seed=4)


def smooth_image(width: int, height: int, ext: str, shade: int = 0) -> bytes:
    """A gradient (it compresses well: large sizes stay small uploads)."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    pixels = np.stack([x + 0 * y, y + 0 * x, (x + y + shade) % 256], axis=2).astype(np.uint8)
    ok, buffer = cv2.imencode(ext, pixels)
    assert ok
    return buffer.tobytes()


def upload(
    client: FlaskClient,
    data: bytes,
    name: str = "photo.jpg",
    auth: dict[str, str] = ALICE_AUTH,
    path: str = "/v1/images",
    **fields: str,
) -> Any:
    return client.post(path, headers=auth, data={"image": (io.BytesIO(data), name), **fields})


def originals(data_dir: Path) -> list[Path]:
    return sorted(p for p in (data_dir / "originals").rglob("*") if p.is_file())


# ---------------------------------------------------------------------- round trip, dedupe


@pytest.mark.parametrize("path", ["/v1/images", "/image/upload"])
def test_round_trip_is_byte_identical(repo_client: FlaskClient, path: str) -> None:
    photo = shared_image("dog.jpg").read_bytes()
    created = upload(repo_client, photo, "dog.jpg", path=path)
    assert created.status_code == 201, created.get_json()
    image = created.get_json()["image"]
    assert created.get_json()["duplicate"] is False
    assert image["sha256"] == hashlib.sha256(photo).hexdigest()
    assert image["sizeBytes"] == len(photo)
    assert (image["originalName"], image["mimeType"], image["owner"]) == (
        "dog.jpg",
        "image/jpeg",
        "alice",
    )
    assert (image["width"], image["height"]) == (768, 576)
    assert image["camera"]["make"] == "Canon"  # dog.jpg carries a camera's EXIF
    for route in (f"/v1/images/{image['id']}", f"/image/{image['id']}"):
        answer = repo_client.get(route, headers=ALICE_AUTH)
        assert answer.status_code == 200
        assert answer.data == photo
        assert answer.headers["ETag"] == f'"{image["sha256"]}"'
        assert "private" in answer.headers["Cache-Control"]
        assert answer.mimetype == "image/jpeg"


def test_conditional_and_range_requests(repo_client: FlaskClient) -> None:
    image = upload(repo_client, JPEG).get_json()["image"]
    route = f"/v1/images/{image['id']}"
    etag = repo_client.get(route, headers=ALICE_AUTH).headers["ETag"]
    assert repo_client.get(route, headers={**ALICE_AUTH, "If-None-Match": etag}).status_code == 304
    partial = repo_client.get(route, headers={**ALICE_AUTH, "Range": "bytes=10-19"})
    assert partial.status_code == 206
    assert partial.data == JPEG[10:20]
    assert partial.headers["Content-Range"] == f"bytes 10-19/{len(JPEG)}"
    beyond = repo_client.get(route, headers={**ALICE_AUTH, "Range": f"bytes={len(JPEG) + 5}-"})
    assert beyond.status_code == 416
    assert beyond.get_json()["error"]["reason"] == "range_not_satisfiable"


def test_same_bytes_twice_is_a_duplicate(repo_client: FlaskClient, data_dir: Path) -> None:
    first = upload(repo_client, JPEG, "a.jpg")
    again = upload(repo_client, JPEG, "b.jpg")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json()["duplicate"] is True
    assert again.get_json()["image"]["id"] == first.get_json()["image"]["id"]
    assert again.get_json()["image"]["originalName"] == "a.jpg"  # the stored image, unchanged
    listed = repo_client.get("/v1/images", headers=ALICE_AUTH).get_json()["images"]
    assert len(listed) == 1
    assert len(originals(data_dir)) == 1


def test_another_owner_gets_its_own_image_and_shares_the_file(
    repo_client: FlaskClient, data_dir: Path
) -> None:
    mine = upload(repo_client, JPEG).get_json()["image"]
    theirs = upload(repo_client, JPEG, auth=BOB_AUTH)
    assert theirs.status_code == 201
    assert theirs.get_json()["image"]["id"] != mine["id"]
    assert theirs.get_json()["image"]["owner"] == "bob"
    assert len(originals(data_dir)) == 1  # content-addressed: one file for both rows
    # The file stays while one owner still has the image, and goes with the last one.
    assert repo_client.delete(f"/v1/images/{mine['id']}", headers=ALICE_AUTH).status_code == 204
    assert len(originals(data_dir)) == 1
    bob_id = theirs.get_json()["image"]["id"]
    assert repo_client.get(f"/v1/images/{bob_id}", headers=BOB_AUTH).data == JPEG
    assert repo_client.delete(f"/v1/images/{bob_id}", headers=BOB_AUTH).status_code == 204
    assert originals(data_dir) == []


def test_same_picture_in_another_file_is_found_by_pixel_sha256(repo_client: FlaskClient) -> None:
    pixels = cv2.imdecode(np.frombuffer(PNG, np.uint8), cv2.IMREAD_COLOR)
    assert pixels is not None
    ok, other = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok
    assert other.tobytes() != PNG
    first = upload(repo_client, PNG, "a.png").get_json()["image"]
    second = upload(repo_client, other.tobytes(), "b.png").get_json()["image"]
    assert first["id"] != second["id"]
    assert first["sha256"] != second["sha256"]
    assert first["pixelSha256"] == second["pixelSha256"]
    found = repo_client.get(
        f"/v1/images?pixel_sha256={first['pixelSha256']}", headers=ALICE_AUTH
    ).get_json()["images"]
    assert {i["id"] for i in found} == {first["id"], second["id"]}


# ---------------------------------------------------------------------- ownership


def test_another_owners_image_is_a_404_everywhere(repo_client: FlaskClient) -> None:
    image_id = upload(repo_client, JPEG).get_json()["image"]["id"]
    for method, suffix in [
        ("GET", ""),
        ("GET", "/details"),
        ("GET", "/thumbnail"),
        ("GET", "/render?w=64"),
        ("GET", "/detections"),
        ("POST", "/detect"),
        ("DELETE", ""),
    ]:
        answer = repo_client.open(f"/v1/images/{image_id}{suffix}", method=method, headers=BOB_AUTH)
        assert answer.status_code == 404, (method, suffix)
        assert answer.get_json()["error"]["reason"] == "image_not_found"
    assert repo_client.get("/v1/images", headers=BOB_AUTH).get_json()["images"] == []
    assert repo_client.get(f"/v1/images/{image_id}", headers=ALICE_AUTH).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        # The original routes' own words are not image ids: only their routes answer there.
        pytest.param("GET", "/image/upload", {"POST", "OPTIONS"}, id="get-upload"),
        pytest.param("DELETE", "/image/list", {"GET", "HEAD", "OPTIONS"}, id="delete-list"),
    ],
)
def test_the_original_routes_words_are_not_image_ids(
    repo_client: FlaskClient, method: str, path: str, allowed: set[str]
) -> None:
    answer = repo_client.open(path, method=method, headers=ALICE_AUTH)
    assert answer.status_code == 405
    assert set(answer.headers["Allow"].replace(" ", "").split(",")) == allowed


def test_routes_need_a_token(repo_client: FlaskClient) -> None:
    assert repo_client.get("/v1/images").status_code == 401
    assert (
        repo_client.post("/image/upload", data={"image": (io.BytesIO(JPEG), "a.jpg")}).status_code
        == 401
    )


def test_ids_are_opaque_and_unguessable(repo_client: FlaskClient) -> None:
    ids = [
        upload(repo_client, encode_image(40, 30, ".png", seed=s)).get_json()["image"]["id"]
        for s in range(3)
    ]
    assert len(set(ids)) == 3
    assert all(len(i) == 22 for i in ids)
    # Unknown, malformed and huge ids are plain 404s.
    for image_id in ("A" * 22, "nope", "x" * 300, "..%2F..%2Fetc"):
        assert (
            repo_client.get(f"/v1/images/{image_id}/details", headers=ALICE_AUTH).status_code == 404
        )


# ---------------------------------------------------------------------- renditions


def _decoded(data: bytes) -> np.ndarray[Any, Any]:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None
    return image


def test_thumbnail_sizes_and_formats(repo_client: FlaskClient) -> None:
    photo = smooth_image(1000, 600, ".jpg")
    image_id = upload(repo_client, photo).get_json()["image"]["id"]
    default = repo_client.get(f"/image/{image_id}/thumbnail", headers=ALICE_AUTH)
    assert default.status_code == 200
    assert default.mimetype == "image/jpeg"
    assert _decoded(default.data).shape[:2] == (154, 256)
    for size, fmt, mime in [(128, "png", "image/png"), (512, "webp", "image/webp")]:
        answer = repo_client.get(
            f"/v1/images/{image_id}/thumbnail?size={size}&format={fmt}", headers=ALICE_AUTH
        )
        assert answer.mimetype == mime
        assert max(_decoded(answer.data).shape[:2]) == size
    assert (
        repo_client.get(f"/v1/images/{image_id}/thumbnail?size=300", headers=ALICE_AUTH).status_code
        == 400
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # 300 snaps up to 512: 1000x600 fitted into width 512.
        pytest.param("w=300", (307, 512), id="width-snaps-up"),
        # Fitted into the box: the width decides.
        pytest.param("w=64&h=64", (38, 64), id="contain-box"),
        # 100 snaps to 128.
        pytest.param("h=100", (128, 213), id="height-snaps-up"),
        # Covered and cropped to the square.
        pytest.param("w=100&h=100&fit=cover", (128, 128), id="cover-crops"),
        # Never enlarged: 2048 is above the original.
        pytest.param("w=5000", (600, 1000), id="never-enlarged"),
    ],
)
def test_render_sizes_snap_to_the_ladder(
    repo_client: FlaskClient, query: str, expected: tuple[int, int]
) -> None:
    image_id = upload(repo_client, smooth_image(1000, 600, ".png"), "p.png").get_json()["image"][
        "id"
    ]
    answer = repo_client.get(f"/v1/images/{image_id}/render?{query}&format=png", headers=ALICE_AUTH)
    assert answer.status_code == 200, answer.get_json()
    assert _decoded(answer.data).shape[:2] == expected


def test_render_is_cached_with_a_stable_etag(repo_client: FlaskClient, data_dir: Path) -> None:
    image_id = upload(repo_client, JPEG).get_json()["image"]["id"]
    route = f"/v1/images/{image_id}/render?w=128&format=png&annotate=true"
    first = repo_client.get(route, headers=ALICE_AUTH)
    cached = list((data_dir / "derived").rglob("*.png"))
    assert len(cached) == 1
    second = repo_client.get(route, headers=ALICE_AUTH)
    assert second.headers["ETag"] == first.headers["ETag"]
    assert second.data == first.data
    assert (
        repo_client.get(
            route, headers={**ALICE_AUTH, "If-None-Match": first.headers["ETag"]}
        ).status_code
        == 304
    )
    # The cache may be wiped at any time: the same request makes the same picture again.
    cached[0].unlink()
    third = repo_client.get(route, headers=ALICE_AUTH)
    assert third.headers["ETag"] == first.headers["ETag"]
    assert third.data == first.data
    # Boxes drawn or not are different renditions.
    plain = repo_client.get(route.replace("annotate=true", "annotate=false"), headers=ALICE_AUTH)
    assert plain.headers["ETag"] != first.headers["ETag"]
    assert plain.data != first.data


def test_original_route_renders_with_max_side_and_format(repo_client: FlaskClient) -> None:
    image_id = upload(repo_client, smooth_image(800, 400, ".jpg")).get_json()["image"]["id"]
    answer = repo_client.get(f"/image/{image_id}?max_side=200&format=png", headers=ALICE_AUTH)
    assert answer.status_code == 200
    assert answer.mimetype == "image/png"
    assert answer.data.startswith(b"\x89PNG")
    assert _decoded(answer.data).shape[:2] == (100, 200)
    assert repo_client.get(f"/image/{image_id}?max_side=0", headers=ALICE_AUTH).status_code == 400


# ---------------------------------------------------------------------- pages, filters


def test_pages_stay_stable_across_inserts_and_tokens_are_signed(repo_client: FlaskClient) -> None:
    ids = [
        upload(
            repo_client, encode_image(32, 32, ".png", seed=10 + s), f"p{s}.png", detect="false"
        ).get_json()["image"]["id"]
        for s in range(7)
    ]
    first = repo_client.get("/v1/images?page_size=3", headers=ALICE_AUTH)
    body = first.get_json()
    assert [i["id"] for i in body["images"]] == ids[::-1][:3]  # newest first
    assert 'rel="next"' in first.headers["Link"]
    for s in range(2):  # new uploads between pages land before the first page, not in later ones
        upload(repo_client, encode_image(32, 32, ".png", seed=50 + s), detect="false")
    seen = [i["id"] for i in body["images"]]
    token = body["nextPageToken"]
    while token:
        page = repo_client.get(
            f"/v1/images?page_size=3&page_token={token}", headers=ALICE_AUTH
        ).get_json()
        seen += [i["id"] for i in page["images"]]
        token = page.get("nextPageToken")
    assert seen == ids[::-1]
    tampered = body["nextPageToken"][:-2] + (
        "AA" if not body["nextPageToken"].endswith("AA") else "BB"
    )
    for bad in (tampered, "garbage", "a.b"):
        answer = repo_client.get(f"/v1/images?page_token={bad}", headers=ALICE_AUTH)
        assert answer.status_code == 400
        assert answer.get_json()["error"]["reason"] == "invalid_page_token"
    # A token is bound to its filters.
    other = repo_client.get(
        f"/v1/images?name_prefix=p&page_token={body['nextPageToken']}", headers=ALICE_AUTH
    )
    assert other.status_code == 400


def test_list_filters(repo_client: FlaskClient) -> None:
    a = upload(repo_client, encode_image(64, 48, ".png", seed=20), "cat_1.png").get_json()["image"]
    b = upload(
        repo_client, encode_image(64, 48, ".png", seed=21), "dog_1.png", detect="false"
    ).get_json()["image"]

    def listed(query: str) -> set[str]:
        answer = repo_client.get(f"/v1/images?{query}", headers=ALICE_AUTH)
        assert answer.status_code == 200, answer.get_json()
        return {i["id"] for i in answer.get_json()["images"]}

    assert listed("name_prefix=cat") == {a["id"]}
    assert listed("name_prefix=%25") == set()  # LIKE wildcards are literal
    assert listed(f"sha256={b['sha256']}") == {b["id"]}
    # The fake detector finds a large dog at 0.9 (its tiny person is below min_width), on
    # image a only: b had detect=false.
    assert listed("label=dog") == {a["id"]}
    assert listed("label=DOG") == {a["id"]}
    assert listed("label=dog&label=person") == set()  # labels are ANDed
    assert listed("label=dog&min_score=0.95") == set()
    assert listed("label=dog&min_count=2") == set()
    assert listed(f"uploaded_after={a['uploadedAt']}") == {b["id"]}
    assert listed("taken_after=2000-01-01") == set()  # no EXIF dates on synthetic images
    labels = repo_client.get("/v1/labels?min_score=0.6", headers=ALICE_AUTH).get_json()["labels"]
    assert labels == [{"name": "dog", "images": 1, "detections": 1}]
    for bad in (
        "page_size=0",
        "page_size=1001",
        "min_score=2",
        "uploaded_after=yesterday",
        "sha256=xyz",
    ):
        assert repo_client.get(f"/v1/images?{bad}", headers=ALICE_AUTH).status_code == 400, bad


# ---------------------------------------------------------------------- several files, raw


def test_several_files_answer_per_file(repo_client: FlaskClient) -> None:
    answer = repo_client.post(
        "/v1/images",
        headers=ALICE_AUTH,
        data={
            "images": [
                (io.BytesIO(JPEG), "a.jpg"),
                (io.BytesIO(b"not an image at all"), "b.txt"),
                (io.BytesIO(JPEG), "c.jpg"),
            ]
        },
    )
    assert answer.status_code == 200
    results = answer.get_json()["results"]
    assert [r["status"] for r in results] == [201, 415, 200]
    assert results[1]["error"]["reason"] == "unsupported_image_format"
    assert results[2]["duplicate"] is True


def test_raw_body_upload_with_a_filename(repo_client: FlaskClient) -> None:
    answer = repo_client.post(
        "/v1/images?filename=raw.png&detect=false",
        headers={**ALICE_AUTH, "Content-Type": "image/png"},
        data=PNG,
    )
    assert answer.status_code == 201
    assert answer.get_json()["image"]["originalName"] == "raw.png"
    assert answer.get_json()["image"]["labels"] == []
    assert answer.headers["Location"].endswith("/details")


def test_detections_and_a_rerun(repo_client: FlaskClient) -> None:
    image_id = upload(repo_client, JPEG).get_json()["image"]["id"]
    runs = repo_client.get(f"/v1/images/{image_id}/detections", headers=ALICE_AUTH).get_json()[
        "runs"
    ]
    assert len(runs) == 1
    assert runs[0]["model"] == "fake"
    assert [a["name"] for a in runs[0]["localizedObjectAnnotations"]] == ["dog"]
    box = runs[0]["localizedObjectAnnotations"][0]["boundingPoly"]["normalizedVertices"]
    assert box[0] == {"x": 0.25, "y": 0.25}
    assert box[2] == {"x": 0.75, "y": 0.75}
    rerun = repo_client.post(f"/v1/images/{image_id}/detect?score_th=0.95", headers=ALICE_AUTH)
    assert rerun.status_code == 200
    assert rerun.get_json()["runs"][0]["localizedObjectAnnotations"] == []  # replaced
    assert rerun.get_json()["runs"][0]["parameters"]["score_th"] == 0.95
    details = repo_client.get(f"/v1/images/{image_id}/details", headers=ALICE_AUTH)
    assert details.get_json()["image"]["labels"] == []


# ---------------------------------------------------------------------- errors


def _bomb_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        pytest.param(b"hello, not an image", 415, "unsupported_image_format", id="not-an-image"),
        pytest.param(
            encode_image(20, 20, ".bmp"), 415, "unsupported_image_format", id="bmp-not-stored"
        ),
        pytest.param(JPEG[: len(JPEG) // 3], 422, "undecodable_image", id="truncated-jpeg"),
        pytest.param(_bomb_png(30000, 30000), 400, "image_too_large", id="pixel-bomb"),
    ],
)
def test_bad_uploads(
    repo_client: FlaskClient, body: bytes, status: int, reason: str, data_dir: Path
) -> None:
    answer = upload(repo_client, body, "x")
    assert answer.status_code == status, answer.get_json()
    assert answer.get_json()["error"]["reason"] == reason
    assert originals(data_dir) == []


def test_request_errors(repo_client: FlaskClient) -> None:
    too_many = {
        "images": [(io.BytesIO(encode_image(8, 8, ".png", seed=s)), f"{s}.png") for s in range(17)]
    }
    answer = repo_client.post("/v1/images", headers=ALICE_AUTH, data=too_many)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["reason"] == "too_many_images"
    big = repo_client.post(
        "/v1/images",
        headers={**ALICE_AUTH, "Content-Type": "image/jpeg"},
        data=b"\xff" * (5 * 1024 * 1024),
    )
    assert big.status_code == 413
    chunked = repo_client.post(
        "/v1/images",
        headers={**ALICE_AUTH, "Content-Type": "image/jpeg", "Transfer-Encoding": "chunked"},
        input_stream=io.BytesIO(b"\xff" * (5 * 1024 * 1024)),
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert chunked.status_code == 413
    text = repo_client.post(
        "/v1/images", headers={**ALICE_AUTH, "Content-Type": "text/plain"}, data=b"x"
    )
    assert text.status_code == 415
    wrong_field = repo_client.post(
        "/v1/images", headers=ALICE_AUTH, data={"photo": (io.BytesIO(JPEG), "a.jpg")}
    )
    assert wrong_field.status_code == 400
    bad_flag = upload(repo_client, JPEG, detect="maybe")
    assert bad_flag.status_code == 400
    unknown_model = upload(repo_client, JPEG, model="nope")
    assert unknown_model.status_code == 404
    assert unknown_model.get_json()["error"]["reason"] == "unknown_model"


@sqlite_only  # SQLite's database-wide write lock: PostgreSQL has row locks
def test_busy_sqlite_is_a_503_with_retry_after(
    repo_client: FlaskClient, repo_config: Any, data_dir: Path
) -> None:
    assert repo_config.repo_db_url is None
    blocker = sqlite3.connect(data_dir / "repository.sqlite3", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        answer = upload(repo_client, JPEG)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert answer.get_json()["error"]["reason"] == "repository_busy"
    assert "locked" not in answer.get_data(as_text=True)
    assert upload(repo_client, JPEG).status_code == 201  # and fine once the lock is gone


def test_enospc_from_the_kernel_is_insufficient_storage() -> None:
    # /dev/full answers every write with ENOSPC: the storage's write path maps it to the 507.
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(InsufficientStorage) as raised:
            write_all(fd, memoryview(b"x" * 4096))
    finally:
        os.close(fd)
    assert isinstance(raised.value.__cause__, OSError)
    assert raised.value.__cause__.errno == errno.ENOSPC
    assert raised.value.status == 507


# The app in a process of its own whose file size limit (RLIMIT_FSIZE) is below the photo's
# size: staging the upload fails in the kernel (EFBIG, the "file too large" of a full quota),
# as on a full disk; then the limit is lifted and the same upload goes through.
FULL_DISK = textwrap.dedent(
    """
    import io, json, resource, signal, sys
    from pathlib import Path
    from config import ServiceConfig
    from serve_http import create_app
    from tests.helpers import FakeDetector

    data_dir, db_url, limit = Path(sys.argv[1]), sys.argv[2] or None, int(sys.argv[3])
    photo, token = Path(sys.argv[4]).read_bytes(), sys.argv[5]
    config = ServiceConfig(api_tokens=(f"alice:{token}",), data_dir=data_dir, repo_db_url=db_url)
    client = create_app(config, FakeDetector()).test_client()

    def upload():
        answer = client.post(
            "/v1/images",
            headers={"X-Api-Token": token},
            data={"image": (io.BytesIO(photo), "big.png")},
        )
        return [answer.status_code, answer.get_json()]

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    full = upload()
    left = [str(p) for p in (data_dir / "tmp").iterdir()]
    left += [str(p) for p in (data_dir / "originals").rglob("*") if p.is_file()]
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    print(json.dumps({"full": full, "left": left, "fine": upload()}))
    """
)


def test_a_full_disk_is_a_507_and_leaves_nothing_behind(
    tmp_path: Path, data_dir: Path, db_url: str | None
) -> None:
    photo = tmp_path / "big.png"
    photo.write_bytes(encode_image(256, 256, ".png", seed=7))  # noise: it does not compress
    limit = 16 * 1024
    assert photo.stat().st_size > 2 * limit
    # Migrated first, without the limit: only the upload's own writes meet it.
    created = run_python(
        "-c",
        FULL_DISK,
        str(data_dir),
        db_url or "",
        str(limit),
        str(photo),
        ALICE,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr[-3000:]
    outcome = json.loads(created.stdout.strip().splitlines()[-1])
    status, body = outcome["full"]
    assert status == 507, body
    assert body["error"]["reason"] == "insufficient_storage"
    assert "Traceback" not in created.stderr
    assert outcome["left"] == []  # no temp file, no original
    assert outcome["fine"][0] == 201  # the same upload once there is room
