"""Validate the Kubernetes manifests offline against the API schemas of two Kubernetes versions.

    python scripts/validate_kubernetes.py [deploy/kubernetes ...] [-k 1.37.0 -k 1.35.0]

Every YAML document under the given files or folders is checked with kubernetes-validate in
strict mode (a field the API does not know is an error), against the JSON schemas that the
kubernetes-validate wheel bundles: nothing is downloaded.

kubernetes-validate's own command line only warns, and exits 0, when it has no schema for a
document's kind and apiVersion, so a misspelt apiVersion or an API version that Kubernetes has
removed would pass. Here that is a failure, except for the kinds listed in SKIPPED, which are
reported as skipped with the reason: custom resources, whose schemas come with their operator
(tests/test_kubernetes.py cross-checks them), and kustomize's own input file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from kubernetes_validate import utils as kubernetes_validate

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATHS = (REPO_ROOT / "deploy" / "kubernetes",)

# The newest Kubernetes minor release that kubernetes-validate bundles schemas for, and the
# oldest one the Kubernetes project still supports (it supports the three newest). Must be
# exactly bundled versions: kubernetes-validate would otherwise quietly use an older schema.
KUBERNETES_VERSIONS = ("1.37.0", "1.35.0")

# (API group, kind) -> why it has no bundled schema. The group is the part of apiVersion
# before the slash. Any other kind without a schema fails.
SKIPPED = {
    ("monitoring.coreos.com", "ServiceMonitor"): (
        "Prometheus Operator custom resource: its schema comes with the operator's CRDs, "
        "not with kubernetes-validate; cross-checked in tests/test_kubernetes.py"
    ),
    ("kustomize.config.k8s.io", "Kustomization"): (
        "kustomize's input, not an API object; the files it lists are validated themselves"
    ),
}

Status = Literal["ok", "skip", "fail"]


@dataclass(frozen=True)
class Outcome:
    source: str  # file name and document number, e.g. deployment.yaml#1
    resource: str  # kind/name
    version: str  # Kubernetes version, or "-" when the document was not validated
    status: Status
    detail: str

    def line(self) -> str:
        return (
            f"{self.status.upper():4} {self.source} {self.resource} [{self.version}] {self.detail}"
        )


def validate_document(document: object, version: str) -> tuple[Status, str]:
    """Validate one parsed document against one Kubernetes version's strict schemas."""
    if not isinstance(document, dict):
        return "fail", f"not a mapping but {type(document).__name__}"
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return "fail", "apiVersion and kind must both be strings"
    reason = SKIPPED.get((api_version.rpartition("/")[0], kind))
    if reason is not None:
        return "skip", reason
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError as exc:
        return "fail", f"{exc.message} (a misspelt or removed apiVersion?)"
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(item) for item in exc.path) or "(top level)"
        return "fail", f"{path}: {exc.message}"
    return "ok", "valid (strict)"


def manifest_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in {".yaml", ".yml"}))
        else:
            files.append(path)
    return files


def _resource_name(document: object) -> str:
    if not isinstance(document, dict):
        return "?"
    metadata: Any = document.get("metadata")
    name = metadata.get("name", "?") if isinstance(metadata, dict) else "?"
    return f"{document.get('kind', '?')}/{name}"


def validate_files(files: Sequence[Path], versions: Sequence[str]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for file in files:
        label = str(file.relative_to(REPO_ROOT)) if file.is_relative_to(REPO_ROOT) else str(file)
        try:
            documents = [d for d in yaml.safe_load_all(file.read_text()) if d is not None]
        except (OSError, yaml.YAMLError) as exc:
            outcomes.append(Outcome(label, "?", "-", "fail", f"cannot read: {exc}"))
            continue
        if not documents:
            outcomes.append(Outcome(label, "?", "-", "fail", "no YAML document in the file"))
        for number, document in enumerate(documents, start=1):
            source = f"{label}#{number}"
            for version in versions:
                status, detail = validate_document(document, version)
                if status == "skip":  # the same reason for every version: reported once
                    outcomes.append(Outcome(source, _resource_name(document), "-", status, detail))
                    break
                outcomes.append(Outcome(source, _resource_name(document), version, status, detail))
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("paths", nargs="*", type=Path, help="files or folders of manifests")
    parser.add_argument(
        "-k",
        "--kubernetes-version",
        action="append",
        dest="versions",
        help=f"Kubernetes version, repeatable (default: {', '.join(KUBERNETES_VERSIONS)})",
    )
    args = parser.parse_args(argv)
    versions: list[str] = args.versions or list(KUBERNETES_VERSIONS)
    bundled: list[str] = kubernetes_validate.all_versions()
    unknown = [v for v in versions if v not in bundled]
    if unknown:
        print(
            f"kubernetes-validate has no schemas for {', '.join(unknown)}; "
            f"it bundles {', '.join(bundled)}",
            file=sys.stderr,
        )
        return 2
    files = manifest_files([p.resolve() for p in args.paths] or DEFAULT_PATHS)
    if not files:
        print("no manifests found", file=sys.stderr)
        return 2
    outcomes = validate_files(files, versions)
    for outcome in outcomes:
        print(outcome.line())
    failed = sum(outcome.status == "fail" for outcome in outcomes)
    checked = len({o.source for o in outcomes})
    print(
        f"{checked} documents in {len(files)} files, Kubernetes {' and '.join(versions)}: "
        f"{failed} failures"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
