"""The models one worker serves: what the service needs of a detector, the registry that
names them, and loading the configured ones.

Tests inject their own detectors (anything with `info`, `ready` and `detect`);
`scripts/check_models.py` loads exactly what a worker would, before a reload.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from config import ServiceConfig
from detection_types import (
    DetectionParams,
    DetectionResult,
    ImageArray,
    ModelFileMissingError,
    ModelInfo,
    ModelLoadError,
)
from errors import UnknownModel
from manifests import discover_models
from predict import load_discovered

logger = logging.getLogger("detection_service")


class DetectorLike(Protocol):
    info: ModelInfo
    ready: bool

    def detect(self, image: ImageArray, params: DetectionParams) -> DetectionResult: ...


@dataclass(frozen=True)
class ModelRegistry:
    """The models one worker serves, by name, and the one used when a request names none."""

    detectors: Mapping[str, DetectorLike]
    default: str

    def __post_init__(self) -> None:
        if self.default not in self.detectors:
            raise ValueError(f"default model {self.default!r} is not among the loaded models")

    @classmethod
    def of(cls, detector: DetectorLike) -> ModelRegistry:
        """A registry of one model, which is then the default."""
        return cls(detectors={detector.info.name: detector}, default=detector.info.name)

    @property
    def ready(self) -> bool:
        return all(detector.ready for detector in self.detectors.values())

    @property
    def names(self) -> list[str]:
        return sorted(self.detectors)

    def resolve(self, name: Any) -> str:
        """The loaded model a request asks for; Google's `builtin/...` means the default."""
        if name is None or name == "" or (isinstance(name, str) and name.startswith("builtin/")):
            return self.default
        if not isinstance(name, str) or name not in self.detectors:
            raise UnknownModel(
                f"unknown model {str(name)[:80]!r}; this service has {', '.join(self.names)}"
            )
        return name

    def detector(self, name: str) -> DetectorLike:
        return self.detectors[name]


def load_registry(
    config: ServiceConfig, on_loaded: Callable[[str, float], None] | None = None
) -> ModelRegistry:
    """Load the configured models (all with weights present, by default), each once.

    A model named in MODELS must load; without MODELS, a manifest whose weights have not been
    fetched is skipped with a warning, so that `make run` serves the default model alone.
    `on_loaded(name, seconds)` hears how long each model took to load and warm up (metrics).
    """
    available = discover_models(config.models_dir)
    names = list(config.models) or list(available)
    missing = [name for name in names if name not in available]
    if missing:
        raise ModelLoadError(
            f"MODELS names {', '.join(missing)}, not found in {config.models_dir} "
            f"(found: {', '.join(available) or 'none'})"
        )
    detectors: dict[str, DetectorLike] = {}
    for name in names:
        try:
            # Loaded from this one look at the folder, not a new one per model.
            started = time.perf_counter()
            detectors[name] = load_discovered(available[name], config.intra_op_threads)
            if on_loaded is not None:
                on_loaded(name, time.perf_counter() - started)
        except ModelFileMissingError as exc:
            if config.models or name == config.model_name:
                raise
            logger.warning("model %s not loaded: %s", name, exc)
    if config.model_name not in detectors:
        raise ModelLoadError(
            f"default model MODEL_NAME={config.model_name!r} is not among the loaded models "
            f"({', '.join(detectors) or 'none'})"
        )
    return ModelRegistry(detectors=detectors, default=config.model_name)
