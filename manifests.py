"""Model manifests and the models folder: read and validate `models/<name>.json`, its labels
file and the ONNX metadata that describes a model without one, and find the models a folder
holds (`discover_models`).

Manifest `models/<name>.json` (a JSON object; unknown keys are logged and ignored):

- `file` (required): the ONNX file, relative to the manifest's folder.
- `license` (required): the weights' licence.
- `name`: optional; when given it must equal the file name's stem.
- `family`: one of the families or aliases of `families.FAMILIES` (documented in families.py);
  absent or null: detected from the outputs.
- `input_size`: `{"width": W, "height": H}`; must agree with a fixed ONNX input size. For a
  dynamic input it is the size used (before the metadata `imgsz`, which is only the size the
  model was trained at); one of the two is needed then.
- `class_names` (list of strings) or `labels_file` (one name per line, relative to the
  manifest); neither: the ONNX metadata `names`, else COCO-80 when the model has 80 classes.
- `preprocess`: overrides of the family's defaults, all optional: `resize` ("letterbox" keeps
  the aspect ratio and pads, "stretch" resizes to the input size), `pad_position` ("top_left" |
  "center"), `pad_value` (0..255, the colour of the padding before scaling), `channel_order`
  ("bgr" | "rgb"), `scale` (> 0), `mean` and `std` (3 numbers in the tensor's channel order, or
  null for none). The tensor is `x = (pixel * scale - mean) / std`, pixel in 0..255.
- `cell_center` (gfl only): where a GFL cell's centre is: "pixel_center" `(i + 0.5) * stride -
  0.5` (NanoDet-m, the default for per-stride outputs), "corner" `i * stride` (NanoDet-Plus,
  the default for the single output), "center" `(i + 0.5) * stride` (PP-PicoDet).
- `description`, `upstream_url`, `sha256` (list of accepted digests; empty: any).

A bare `<name>.onnx` without a manifest is served too: its family is detected from the output
shapes (`detect_family`), its class names, input size, task, licence and description come from
the ONNX metadata that Ultralytics exports write (`names`, `imgsz`, `task`, `license`,
`description`; read with `ast.literal_eval`, never `eval`). A model whose metadata `task` is not
`detect` is refused.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from detection_types import CellCenter, ModelLoadError, ModelManifest
from families import FAMILIES

# The logger these functions used when they lived in predict.py: log lines, and any filter
# or alert keyed on the logger's name, stay as they were.
logger = logging.getLogger("detection_service.predict")

# The largest network input side taken from a manifest or ONNX metadata: every request
# allocates a float tensor of that size, so a typo like 64000 must fail at load.
MAX_INPUT_SIDE = 8192
# Metadata strings parsed with ast.literal_eval are bounded: a hostile file could otherwise
# make the parser build a huge structure at load.
MAX_METADATA_CHARS = 1 << 20
# The label list used for an 80-class model that names none of its classes.
COCO80_FILE = "coco80.txt"


# --------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------

MANIFEST_KEYS = frozenset(
    {
        "name",
        "family",
        "file",
        "input_size",
        "class_names",
        "labels_file",
        "license",
        "description",
        "upstream_url",
        "sha256",
        "preprocess",
        "cell_center",
    }
)
PREPROCESS_CHOICES: Mapping[str, tuple[str, ...]] = {
    "resize": ("letterbox", "stretch"),
    "pad_position": ("top_left", "center"),
    "channel_order": ("bgr", "rgb"),
}
PREPROCESS_KEYS = ("resize", "pad_position", "pad_value", "channel_order", "scale", "mean", "std")
CELL_CENTERS: tuple[CellCenter, ...] = ("pixel_center", "corner", "center")


def _manifest_field(raw: Mapping[str, Any], key: str, kind: type, path: Path) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ModelLoadError(f"{path}: field {key!r} must be a {kind.__name__}, got {value!r}")
    return value


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _side(value: Any) -> int | None:
    """A network input side: an integer 1..MAX_INPUT_SIDE, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_INPUT_SIDE:
        return value
    return None


def _parse_preprocess(raw: Any, path: Path) -> Mapping[str, Any]:
    """The `preprocess` object of a manifest as `PreprocessSpec` field values."""
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{path}: 'preprocess' must be an object, got {raw!r}")
    unknown = sorted(set(raw) - set(PREPROCESS_KEYS))
    if unknown:
        # A misspelt key would otherwise be silently ignored and the model fed the wrong tensor.
        raise ModelLoadError(
            f"{path}: unknown preprocess keys {unknown}; known: {', '.join(PREPROCESS_KEYS)}"
        )
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}: preprocess.{key}"
        if key in PREPROCESS_CHOICES:
            if value not in PREPROCESS_CHOICES[key]:
                choices = " | ".join(PREPROCESS_CHOICES[key])
                raise ModelLoadError(f"{where} must be one of {choices}, got {value!r}")
            values[key] = value
        elif key == "pad_value":
            if not is_int(value) or not 0 <= value <= 255:
                raise ModelLoadError(f"{where} must be an integer 0..255, got {value!r}")
            values[key] = value
        elif key == "scale":
            if not _is_number(value) or value <= 0:
                raise ModelLoadError(f"{where} must be a positive number, got {value!r}")
            values[key] = float(value)
        elif value is None:  # mean or std: null removes the family's default
            values[key] = None
        else:
            if not isinstance(value, list) or len(value) != 3 or not all(map(_is_number, value)):
                raise ModelLoadError(f"{where} must be 3 numbers or null, got {value!r}")
            if key == "std" and not all(v > 0 for v in value):
                raise ModelLoadError(f"{where} must be positive, got {value!r}")
            values[key] = (float(value[0]), float(value[1]), float(value[2]))
    return MappingProxyType(values)


def _parse_input_size(raw: Any, path: Path) -> tuple[int, int]:
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{path}: field 'input_size' must be a dict, got {raw!r}")
    width, height = _side(raw.get("width")), _side(raw.get("height"))
    if width is None or height is None:
        raise ModelLoadError(
            f"{path}: input_size needs integer width and height, 1..{MAX_INPUT_SIDE}"
        )
    return width, height


def _parse_class_names(raw: Mapping[str, Any], path: Path) -> tuple[str, ...]:
    if "class_names" in raw:
        names = _manifest_field(raw, "class_names", list, path)
    elif "labels_file" in raw:
        labels_path = path.parent / _manifest_field(raw, "labels_file", str, path)
        try:
            lines = labels_path.read_text(encoding="utf-8").splitlines()
        except (OSError, ValueError) as exc:  # ValueError: not UTF-8
            raise ModelLoadError(f"{path}: cannot read labels file {labels_path}: {exc}") from exc
        names = [line.strip() for line in lines if line.strip()]
    else:
        return ()  # found in the ONNX metadata, or COCO-80, when the model is loaded
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ModelLoadError(f"{path}: class names must be a non-empty list of strings")
    return tuple(names)


def load_manifest(path: Path) -> ModelManifest:
    """Read and validate a model manifest; errors name the file and the field."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read model manifest {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{path}: a manifest is a JSON object")
    unknown = sorted(set(raw) - MANIFEST_KEYS)
    if unknown:
        logger.warning("%s: ignoring unknown manifest keys %s", path, ", ".join(unknown))
    name = path.stem
    if "name" in raw:
        name = _manifest_field(raw, "name", str, path)
        if name != path.stem:
            # The registry knows a model by its file name; a second name would be ambiguous.
            raise ModelLoadError(
                f"{path}: field 'name' is {name!r} but a manifest's name is its file name "
                f"({path.stem!r}); drop the field or rename the file"
            )
    family = raw.get("family")
    if family is not None:
        family = _manifest_field(raw, "family", str, path)
        if family not in FAMILIES:
            raise ModelLoadError(
                f"{path}: unknown family {family!r}; known: {', '.join(sorted(FAMILIES))}"
            )
    width = height = None
    if raw.get("input_size") is not None:
        width, height = _parse_input_size(raw["input_size"], path)
    sha256 = raw.get("sha256", [])
    if not isinstance(sha256, list) or not all(isinstance(s, str) for s in sha256):
        raise ModelLoadError(f"{path}: 'sha256' must be a list of hex strings")
    upstream = raw.get("upstream_url")
    if upstream is not None and not isinstance(upstream, str):
        raise ModelLoadError(f"{path}: 'upstream_url' must be a string")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ModelLoadError(f"{path}: 'description' must be a string")
    cell_center = raw.get("cell_center")
    if cell_center is not None and cell_center not in CELL_CENTERS:
        raise ModelLoadError(
            f"{path}: 'cell_center' must be one of {' | '.join(CELL_CENTERS)}, got {cell_center!r}"
        )
    preprocess = raw.get("preprocess")
    return ModelManifest(
        name=name,
        family=family,
        file=_manifest_field(raw, "file", str, path),
        input_width=width,
        input_height=height,
        class_names=_parse_class_names(raw, path),
        license=_manifest_field(raw, "license", str, path),
        upstream_url=upstream,
        sha256=tuple(s.lower() for s in sha256),
        description=description,
        preprocess=(
            MappingProxyType({}) if preprocess is None else _parse_preprocess(preprocess, path)
        ),
        cell_center=cell_center,
    )


def bare_manifest(model_path: Path) -> ModelManifest:
    """The manifest of a `.onnx` file that has none: everything is read from the model."""
    return ModelManifest(
        name=model_path.stem,
        family=None,
        file=model_path.name,
        input_width=None,
        input_height=None,
        class_names=(),
        license="unknown",
        upstream_url=None,
        sha256=(),
        bare=True,
    )


def weights_file(path: Path) -> tuple[ModelManifest, Path]:
    """The manifest and the weights file of what `discover_models` found for a model: a
    manifest and the weights it names beside it, or a bare `.onnx` described by itself."""
    if path.suffix == ".onnx":
        return bare_manifest(path), path
    manifest = load_manifest(path)
    return manifest, path.parent / manifest.file


def snapshot_weights(models_dir: Path, names: Sequence[str] | None) -> dict[Path, bytes]:
    """The weights files of models `names` (None: all) of `models_dir`, as `discover_models`
    finds them,
    read once, each kept only when its manifest accepts its sha256 (or it has no manifest to
    say). Keyed by resolved path. A model whose file cannot be read or verified is left out,
    with a warning: loading it from the file then reports what is wrong."""
    available = discover_models(models_dir)
    snapshot: dict[Path, bytes] = {}
    for name in available if names is None else names:
        if name not in available:
            continue
        try:
            manifest, path = weights_file(available[name])
            data = path.read_bytes()
        except FileNotFoundError as exc:
            if names is not None:  # not fetched: without MODELS such a model is skipped
                logger.warning("model %s: no verified copy of its weights: %s", name, exc)
            continue
        except (ModelLoadError, OSError) as exc:
            logger.warning("model %s: no verified copy of its weights: %s", name, exc)
            continue
        sha256 = hashlib.sha256(data).hexdigest()
        if manifest.sha256 and sha256 not in manifest.sha256:
            logger.warning("model %s: %s has sha256 %s, not the manifest's", name, path, sha256)
            continue
        snapshot[path.resolve()] = data
    return snapshot


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# --------------------------------------------------------------------------------------------
# ONNX metadata (Ultralytics exports: names, imgsz, task, stride, license, description)
# --------------------------------------------------------------------------------------------


def _metadata_literal(metadata: Mapping[str, str], key: str, model: str) -> Any:
    """A metadata value written as a Python literal, parsed without evaluating code."""
    text = metadata[key]
    if len(text) > MAX_METADATA_CHARS:
        raise ModelLoadError(f"model {model!r}: ONNX metadata {key!r} is too long")
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ModelLoadError(
            f"model {model!r}: ONNX metadata {key!r} is not a Python literal ({exc}); "
            "give the value in a manifest instead"
        ) from exc


def metadata_class_names(metadata: Mapping[str, str], model: str) -> tuple[str, ...] | None:
    """Class names from the metadata `names` ("{0: 'person', ...}" or a list), None if absent."""
    if "names" not in metadata:
        return None
    value = _metadata_literal(metadata, "names", model)
    if isinstance(value, dict) and set(value) == set(range(len(value))):
        names = [value[i] for i in range(len(value))]
    elif isinstance(value, list | tuple):
        names = list(value)
    else:
        names = []
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ModelLoadError(
            f"model {model!r}: ONNX metadata 'names' is not a list of names or a dict "
            "{0: name, 1: name, ...}; give 'class_names' in a manifest instead"
        )
    return tuple(names)


def metadata_input_size(metadata: Mapping[str, str], model: str) -> tuple[int, int] | None:
    """(width, height) from the metadata `imgsz`, which Ultralytics writes as [height, width]."""
    if "imgsz" not in metadata:
        return None
    value = _metadata_literal(metadata, "imgsz", model)
    sides = [value] if is_int(value) else list(value) if isinstance(value, list | tuple) else []
    if len(sides) == 1:
        sides *= 2
    if len(sides) != 2 or not all(is_int(s) and 0 < s <= MAX_INPUT_SIDE for s in sides):
        raise ModelLoadError(
            f"model {model!r}: ONNX metadata 'imgsz' {metadata['imgsz']!r} is not "
            "[height, width]; give 'input_size' in a manifest instead"
        )
    return sides[1], sides[0]


def coco80_names(model_path: Path) -> tuple[str, ...] | None:
    """COCO-80 from the model's folder, else from the repository's models folder."""
    for folder in (model_path.parent, Path(__file__).resolve().parent / "models"):
        try:
            lines = (folder / COCO80_FILE).read_text(encoding="utf-8").splitlines()
        except (OSError, ValueError):
            continue
        names = tuple(line.strip() for line in lines if line.strip())
        if len(names) == 80:
            return names
    return None


# --------------------------------------------------------------------------------------------
# The models folder
# --------------------------------------------------------------------------------------------


def _manifest_file(path: Path) -> str | None:
    """The `file` a JSON file names when it is a manifest (an object with a string `file`)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    file = raw.get("file") if isinstance(raw, dict) else None
    return file if isinstance(file, str) else None


def discover_models(models_dir: Path) -> dict[str, Path]:
    """Every model in `models_dir`, name -> its manifest `<name>.json` or, for a `.onnx` that no
    manifest names in its `file`, the `.onnx` itself (name: the file's stem). Sorted by name.

    A `*.json` that is not a manifest (not a JSON object with a string `file`) is skipped with
    a warning, unless a `.onnx` of the same stem is there: then it is taken as that model's
    broken manifest, so that loading the model reports what is wrong with it instead of
    silently serving the weights without it (and without its sha256 check). A bare `.onnx`
    whose stem a manifest already uses is skipped with a warning.
    """
    if not models_dir.is_dir():
        return {}
    found: dict[str, Path] = {}
    claimed: set[Path] = set()
    for path in sorted(models_dir.glob("*.json")):
        file = _manifest_file(path)
        if file is not None:
            found[path.stem] = path
            claimed.add((models_dir / file).resolve())
        elif (models_dir / f"{path.stem}.onnx").is_file():
            found[path.stem] = path
        else:
            logger.warning("skipping %s: not a model manifest (no string 'file' in it)", path)
    for path in sorted(models_dir.glob("*.onnx")):
        if path.resolve() in claimed:
            continue
        if path.stem in found:
            logger.warning(
                "skipping %s: the model name %r belongs to %s, which names another file",
                path,
                path.stem,
                found[path.stem].name,
            )
            continue
        found[path.stem] = path
    return dict(sorted(found.items()))


def model_weights_path(models_dir: Path, name: str) -> Path:
    """The `.onnx` file model `name` would load (whether or not it is there yet)."""
    path = discovered_path(models_dir, name)
    if path.suffix == ".onnx":
        return path
    return models_dir / load_manifest(path).file


def discovered_path(models_dir: Path, name: str) -> Path:
    """The manifest, or the bare `.onnx`, that `discover_models` finds for model `name`."""
    models = discover_models(models_dir)
    path = models.get(name)
    if path is None:
        raise ModelLoadError(
            f"no model {name!r} in {models_dir} (looked for {name}.json and {name}.onnx); "
            f"models there: {', '.join(models) or 'none'}"
        )
    return path
