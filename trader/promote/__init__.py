"""The promotion gate and the promoted artefact's manifest.

A promoted strategy version lives in ``models/<strategy>/<version>/`` with a
``manifest.json`` recording the strategy, its parameters, the data fingerprints, the
code version, the metrics and every gate result, plus a SHA-256 of each other file in
the folder and a ``content_sha256`` of the manifest itself (canonical JSON without that
key). :func:`load_artefact` refuses a missing, failing or altered artefact.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trader import REPO_ROOT
from trader.data import fingerprint
from trader.exceptions import ArtefactError
from trader.strategy import StrategyParams, StrategySpec, get_strategy

MANIFEST = "manifest.json"
#: The file a strategy that needs a model (``StrategySpec.needs_model``) must carry.
MODEL_FILE = "model.onnx"


@dataclass(frozen=True)
class GateResult:
    """One promotion check: ``value`` compared with ``threshold`` by ``op``."""

    name: str
    value: float
    op: str  # ">=" or "<="
    threshold: float

    @property
    def passed(self) -> bool:
        """Whether the check holds (NaN never passes)."""
        if self.op == ">=":
            return self.value >= self.threshold
        if self.op == "<=":
            return self.value <= self.threshold
        raise ValueError(f"unknown comparison {self.op!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON form, with ``passed``."""
        return {
            "name": self.name,
            "value": self.value,
            "op": self.op,
            "threshold": self.threshold,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class Artefact:
    """A verified promoted strategy version.

    ``model_path`` is the verified ``model.onnx`` when the strategy needs a model, else
    None.
    """

    strategy: str
    version: str
    spec: StrategySpec
    params: StrategyParams
    manifest: dict[str, Any]
    model_path: Path | None = None


def code_version() -> str:
    """The git commit of the code (``+dirty`` when the work tree has changes), or
    ``"unknown"`` outside a git checkout."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "trader", "live"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def _content_hash(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "content_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def promote(
    models_dir: Path,
    strategy: str,
    version: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    gates: list[GateResult],
    data_files: list[Path],
    extra_files: dict[str, bytes] | None = None,
    evidence: dict[str, Any] | None = None,
) -> Path:
    """Write a promoted artefact if every gate passes.

    Parameters
    ----------
    models_dir : Path
        Root of the artefacts (``models/``).
    strategy, version : str
        The artefact goes to ``models_dir / strategy / version``.
    params : dict
        Strategy parameters (validated by the strategy's parameter object).
    metrics : dict
        Figures to record (e.g. :func:`trader.metrics.summary`).
    gates : list of GateResult
        Every check; all must pass.
    data_files : list of Path
        The data the evidence was computed on; their SHA-256 are recorded.
    extra_files : dict, optional
        File name -> bytes to store beside the manifest (e.g. ``model.onnx``, required
        when the strategy needs a model).
    evidence : dict, optional
        JSON-serialisable detail behind the gates (per-fold results, parity figures,
        model hashes), recorded under ``evidence``.

    Returns
    -------
    Path
        The manifest's path.

    Raises
    ------
    ArtefactError
        If a gate failed, no gate was given, the version already exists (versions are
        never overwritten) or a strategy that needs a model comes without ``model.onnx``.
    """
    failed = [g.name for g in gates if not g.passed]
    if failed or not gates:
        raise ArtefactError(
            f"{strategy} v{version} not promoted: gates failed: {failed or 'none given'}"
        )
    spec = get_strategy(strategy)
    p = spec.params(params)
    if spec.needs_model and MODEL_FILE not in (extra_files or {}):
        raise ArtefactError(f"{strategy} v{version} not promoted: it needs {MODEL_FILE}")
    out = models_dir / strategy / version
    if out.exists():
        raise ArtefactError(f"{out} exists: promote under a new version")
    out.mkdir(parents=True)
    files = {}
    for name, blob in (extra_files or {}).items():
        (out / name).write_bytes(blob)
        files[name] = hashlib.sha256(blob).hexdigest()
    manifest: dict[str, Any] = {
        "strategy": strategy,
        "version": version,
        "params": p.model_dump(),
        "created_at": datetime.now(UTC).isoformat(),
        "code_version": code_version(),
        "data": {Path(f).name: fingerprint(f) for f in data_files},
        "metrics": metrics,
        "gates": [g.to_dict() for g in gates],
        "files": files,
        "evidence": evidence or {},
    }
    manifest["content_sha256"] = _content_hash(manifest)
    path = out / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def load_artefact(models_dir: Path, strategy: str, version: str) -> Artefact:
    """Load and verify a promoted artefact.

    Raises
    ------
    ArtefactError
        Manifest missing or unreadable; manifest edited after promotion
        (``content_sha256`` mismatch); a gate not passed; a listed file missing or with
        another hash; an unlisted file in the folder; strategy/version not matching
        the folder; invalid parameters; a strategy that needs a model without
        ``model.onnx``.
    """
    folder = models_dir / strategy / version
    path = folder / MANIFEST
    where = f"artefact {folder}"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtefactError(f"{where}: {MANIFEST} missing; promote the strategy first") from None
    except ValueError as e:
        raise ArtefactError(f"{where}: {MANIFEST} is not valid JSON: {e}") from None
    if manifest.get("content_sha256") != _content_hash(manifest):
        raise ArtefactError(f"{where}: manifest content does not match its content_sha256")
    if (manifest.get("strategy"), manifest.get("version")) != (strategy, version):
        raise ArtefactError(
            f"{where}: manifest names {manifest.get('strategy')} v{manifest.get('version')}"
        )
    failed = [g["name"] for g in manifest.get("gates", []) if not g.get("passed")]
    if failed or not manifest.get("gates"):
        raise ArtefactError(f"{where}: gates not passed: {failed or 'none recorded'}")
    listed = manifest.get("files", {})
    for name, digest in listed.items():
        f = folder / name
        if not f.exists():
            raise ArtefactError(f"{where}: file {name} missing")
        if fingerprint(f) != digest:
            raise ArtefactError(f"{where}: file {name} does not match its recorded SHA-256")
    extra = {p.name for p in folder.iterdir()} - set(listed) - {MANIFEST}
    if extra:
        raise ArtefactError(f"{where}: files not in the manifest: {sorted(extra)}")
    spec = get_strategy(strategy)
    try:
        params = spec.params(manifest["params"])
    except (KeyError, ValueError) as e:
        raise ArtefactError(f"{where}: invalid parameters: {e}") from None
    model_path = None
    if spec.needs_model:
        if MODEL_FILE not in listed:
            raise ArtefactError(f"{where}: strategy {strategy} needs {MODEL_FILE}, none listed")
        model_path = folder / MODEL_FILE
    return Artefact(strategy, version, spec, params, manifest, model_path)


__all__ = [
    "MANIFEST",
    "MODEL_FILE",
    "Artefact",
    "GateResult",
    "code_version",
    "load_artefact",
    "promote",
]
