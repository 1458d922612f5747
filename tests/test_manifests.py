"""Model manifests (models/<name>.json): what a valid one gives, and every invalid field named
with its file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

import families
import manifests
from detection_types import ModelLoadError
from tests.helpers import MODELS_DIR

NUM_CLASSES = 80

# --- manifests ------------------------------------------------------------------------------------

COCO_LABELS = "\n".join(f"name{i}" for i in range(NUM_CLASSES)) + "\n"


def valid_manifest() -> dict[str, Any]:
    return {
        "name": "m",
        "family": "yolox",
        "file": "m.onnx",
        "input_size": {"width": 416, "height": 320},
        "labels_file": "labels.txt",
        "license": "Apache-2.0",
        "upstream_url": None,
        "sha256": ["ABCDEF"],
    }


def write_manifest(folder: Path, raw: Any) -> Path:
    (folder / "labels.txt").write_text(COCO_LABELS, encoding="utf-8")
    (folder / "blank.txt").write_text("\n  \n\n", encoding="utf-8")
    (folder / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (folder / "a_folder").mkdir(exist_ok=True)
    path = folder / "m.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


def test_load_manifest_valid(tmp_path: Path) -> None:
    manifest = manifests.load_manifest(write_manifest(tmp_path, valid_manifest()))
    assert (manifest.name, manifest.family, manifest.file) == ("m", "yolox", "m.onnx")
    assert (manifest.input_width, manifest.input_height) == (416, 320)
    assert manifest.class_names == tuple(f"name{i}" for i in range(NUM_CLASSES))
    assert manifest.sha256 == ("abcdef",)  # lower-cased
    assert manifest.upstream_url is None
    assert manifest.description == ""


def test_load_manifest_minimal(tmp_path: Path) -> None:
    # Only file and license: name from the file, the rest found in the model when loaded.
    raw = {"file": "m.onnx", "license": "MIT"}
    manifest = manifests.load_manifest(write_manifest(tmp_path, raw))
    assert manifest.name == "m"
    assert manifest.family is None
    assert (manifest.input_width, manifest.input_height) == (None, None)
    assert manifest.class_names == ()
    assert dict(manifest.preprocess) == {}
    assert manifest.cell_center is None
    assert manifest.bare is False


def test_load_manifest_preprocess_and_cell_center(tmp_path: Path) -> None:
    raw = valid_manifest()
    raw["family"] = "picodet"  # an alias is kept as written; the Detector resolves it
    raw["cell_center"] = "corner"
    raw["preprocess"] = {
        "resize": "stretch",
        "pad_position": "top_left",
        "pad_value": 0,
        "channel_order": "bgr",
        "scale": 1,
        "mean": [1, 2.5, 3],
        "std": None,
    }
    manifest = manifests.load_manifest(write_manifest(tmp_path, raw))
    assert manifest.family == "picodet"
    assert manifest.cell_center == "corner"
    assert dict(manifest.preprocess) == {
        "resize": "stretch",
        "pad_position": "top_left",
        "pad_value": 0,
        "channel_order": "bgr",
        "scale": 1.0,
        "mean": (1.0, 2.5, 3.0),
        "std": None,
    }
    # The overrides are PreprocessSpec fields: replacing the defaults with them works.
    spec = dataclasses.replace(families.FAMILIES["gfl"].preprocess, **manifest.preprocess)
    assert spec.std is None
    assert spec.mean == (1.0, 2.5, 3.0)


def test_load_manifest_unknown_keys_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = valid_manifest()
    raw["preprocessing"] = {}
    with caplog.at_level("WARNING", logger="detection_service.predict"):
        manifests.load_manifest(write_manifest(tmp_path, raw))
    assert "preprocessing" in caplog.text


def test_load_manifest_inline_class_names(tmp_path: Path) -> None:
    raw = valid_manifest()
    del raw["labels_file"]
    raw["class_names"] = ["cat", "dog"]
    raw["description"] = "two classes"
    manifest = manifests.load_manifest(write_manifest(tmp_path, raw))
    assert manifest.class_names == ("cat", "dog")
    assert manifest.description == "two classes"


@pytest.mark.parametrize("name", ["yolox_nano", "nanodet_m_416"])
def test_repository_manifests_load(name: str) -> None:
    manifest = manifests.load_manifest(MODELS_DIR / f"{name}.json")
    assert manifest.name == name
    assert manifest.family in families.FAMILIES
    assert len(manifest.class_names) == NUM_CLASSES
    assert manifest.class_names[0] == "person"
    assert manifest.class_names[16] == "dog"
    assert all(len(digest) == 64 for digest in manifest.sha256)
    assert manifest.sha256


MISSING = object()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # Required string fields, missing or of the wrong type, are named.
        pytest.param({"file": MISSING}, "'file'", id="no-file"),
        pytest.param({"license": MISSING}, "'license'", id="no-license"),
        pytest.param({"name": 3}, "'name'", id="name-int"),
        pytest.param({"file": True}, "'file'", id="file-bool"),
        pytest.param({"family": 1}, "'family'", id="family-int"),
        pytest.param({"description": 1}, "'description'", id="description-int"),
        # A name other than the file's stem: two names for one model.
        pytest.param({"name": "other"}, "'name' is 'other'", id="name-not-stem"),
        # A family nobody knows, with the known ones listed.
        pytest.param({"family": "ssd"}, "unknown family 'ssd'.*gfl.*yolov8", id="family-unknown"),
        # input_size: not an object, or without positive integers.
        pytest.param({"input_size": 416}, "'input_size'", id="input-size-int"),
        pytest.param({"input_size": {"width": 416}}, "input_size", id="no-height"),
        pytest.param({"input_size": {"width": 0, "height": 416}}, "input_size", id="zero"),
        pytest.param({"input_size": {"width": 416, "height": -1}}, "input_size", id="negative"),
        pytest.param({"input_size": {"width": "416", "height": 416}}, "input_size", id="string"),
        pytest.param({"input_size": {"width": 416.0, "height": 416}}, "input_size", id="float"),
        pytest.param({"input_size": {"width": True, "height": 416}}, "input_size", id="bool"),
        pytest.param({"input_size": {"width": 9000, "height": 416}}, "input_size", id="huge"),
        # class_names: not a list, empty, or with non-strings or empty strings.
        pytest.param({"class_names": "person"}, "'class_names'", id="names-string"),
        pytest.param({"class_names": []}, "class names", id="names-empty"),
        pytest.param({"class_names": ["a", 2]}, "class names", id="names-int"),
        pytest.param({"class_names": ["a", ""]}, "class names", id="names-blank"),
        # labels_file: wrong type, missing, a folder, only blank lines, not UTF-8.
        pytest.param({"labels_file": 1}, "'labels_file'", id="labels-int"),
        pytest.param({"labels_file": "nope.txt"}, "labels file", id="labels-missing"),
        pytest.param({"labels_file": "a_folder"}, "labels file", id="labels-folder"),
        pytest.param({"labels_file": "blank.txt"}, "class names", id="labels-blank"),
        pytest.param({"labels_file": "latin1.txt"}, "labels file", id="labels-not-utf8"),
        # sha256 must be a list of strings.
        pytest.param({"sha256": "abc"}, "'sha256'", id="sha-string"),
        pytest.param({"sha256": [1]}, "'sha256'", id="sha-int"),
        # upstream_url, when given, is a string.
        pytest.param({"upstream_url": 5}, "'upstream_url'", id="url-int"),
        # cell_center: one of three names.
        pytest.param({"cell_center": "middle"}, "'cell_center'", id="cell-center"),
        # preprocess: an object of known keys with valid values.
        pytest.param({"preprocess": []}, "'preprocess' must be an object", id="pre-list"),
        pytest.param({"preprocess": {"resise": "stretch"}}, "unknown preprocess", id="pre-typo"),
        pytest.param({"preprocess": {"resize": "crop"}}, "preprocess.resize", id="pre-resize"),
        pytest.param({"preprocess": {"pad_position": "top"}}, "pad_position", id="pre-pad-pos"),
        pytest.param({"preprocess": {"channel_order": "RGB"}}, "channel_order", id="pre-order"),
        pytest.param({"preprocess": {"pad_value": 256}}, "pad_value", id="pre-pad-256"),
        pytest.param({"preprocess": {"pad_value": 1.5}}, "pad_value", id="pre-pad-float"),
        pytest.param({"preprocess": {"pad_value": True}}, "pad_value", id="pre-pad-bool"),
        pytest.param({"preprocess": {"scale": 0}}, "preprocess.scale", id="pre-scale-0"),
        pytest.param({"preprocess": {"scale": "1/255"}}, "preprocess.scale", id="pre-scale-str"),
        pytest.param({"preprocess": {"mean": [1, 2]}}, "preprocess.mean", id="pre-mean-2"),
        pytest.param({"preprocess": {"mean": [1, 2, "3"]}}, "preprocess.mean", id="pre-mean-str"),
        pytest.param({"preprocess": {"std": [1, 0, 1]}}, "preprocess.std", id="pre-std-0"),
    ],
)
def test_load_manifest_errors(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    raw = valid_manifest()
    if "class_names" in changes:
        del raw["labels_file"]  # class_names would win otherwise
    for key, value in changes.items():
        if value is MISSING:
            del raw[key]
        else:
            raw[key] = value
    with pytest.raises(ModelLoadError, match=message) as caught:
        manifests.load_manifest(write_manifest(tmp_path, raw))
    assert "m.json" in str(caught.value)  # the file is named too


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # Not JSON at all.
        pytest.param(b"{name: m", "cannot read model manifest", id="not-json"),
        # Empty file.
        pytest.param(b"", "cannot read model manifest", id="empty"),
        # Not UTF-8.
        pytest.param(b'{"name": "\xff"}', "cannot read model manifest", id="not-utf8"),
        # JSON, but a list.
        pytest.param(b"[1, 2]", "JSON object", id="array"),
        # JSON, but a string.
        pytest.param(b'"manifest"', "JSON object", id="string"),
    ],
)
def test_load_manifest_unreadable(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "m.json"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message):
        manifests.load_manifest(path)


def test_load_manifest_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot read model manifest"):
        manifests.load_manifest(tmp_path / "absent.json")


def test_shipped_manifests_are_valid() -> None:
    for path in sorted(MODELS_DIR.glob("*.json")):
        manifest = manifests.load_manifest(path)
        assert len(manifest.class_names) == 80
        assert manifest.sha256, path
