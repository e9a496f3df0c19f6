"""Model packaging: a model source becomes a validated folder, a content hash and a model asset.

A source is a Hugging Face hub id at a pinned commit (downloaded on the deployer's machine) or a
local folder (a proprietary model). The folder must be a safetensors Hugging Face folder; pickle
weights are refused because loading them runs arbitrary code. The asset version is derived from
the content hash, so the same bytes never make a second version and changed bytes always make a
new one.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from azure.ai.ml.constants import AssetTypes
from azure.ai.ml.entities import Model

# Asset identity lives in delivery.assets (no azure-ai-ml); imported here for existing callers.
from delivery.assets import HASH_PREFIX, model_asset_id, version_from_hash
from delivery.workspace import WorkspaceClient

TAG_CONTENT_HASH = "contentHash"
TAG_SOURCE = "source"
TAG_REVISION = "revision"

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# What a safetensors Hugging Face folder holds: config, tokenizer, weights and their index, docs.
ALLOWED_SUFFIXES = (".json", ".safetensors", ".txt", ".model", ".jinja", ".md")
ALLOWED_NAMES = frozenset({"LICENSE", "NOTICE", ".gitattributes"})
# Either file set is a complete tokenizer for transformers' AutoTokenizer.
TOKENIZER_FILE_SETS = (("tokenizer.json",), ("tokenizer.model",), ("vocab.json", "merges.txt"))
# Files the hub download fetches; anything else in a hub repo (pickles, ONNX, GGUF) stays there.
HUB_ALLOW_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.md", "LICENSE")

_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
_CHUNK = 1 << 20


class ModelValidationError(ValueError):
    """The folder is not a safetensors Hugging Face model folder."""


class AssetConflictError(RuntimeError):
    """A registered version exists but holds different bytes than its version promises."""


@dataclass(frozen=True)
class LocalFolder:
    """A model folder on the deployer's machine (e.g. a proprietary fine-tune)."""

    path: Path

    def describe(self) -> str:
        """The source tag: the folder name, not the machine-specific path."""
        return f"local:{Path(self.path).name}"


@dataclass(frozen=True)
class HubModel:
    """A Hugging Face hub repository at a pinned commit; tags and branches move, commits don't."""

    repo_id: str
    revision: str

    def __post_init__(self) -> None:
        if not _COMMIT_SHA.match(self.revision):
            raise ValueError(
                f"hub revision {self.revision!r} for {self.repo_id} is not a 40-character commit "
                "sha: branches and tags move, so pin the commit (see the model's 'Files' history)"
            )

    def describe(self) -> str:
        """The source tag: `hf:<repo id>`."""
        return f"hf:{self.repo_id}"


ModelSource = LocalFolder | HubModel
HubDownloader = Callable[[str, str], Path]


@dataclass(frozen=True)
class PackagedModel:
    """A validated model folder with its content hash and the asset coordinates it maps to."""

    name: str
    folder: Path
    files: tuple[str, ...]
    content_hash: str
    source: str
    revision: str

    @property
    def version(self) -> str:
        """The asset version: a prefix of the content hash."""
        return version_from_hash(self.content_hash)

    @property
    def asset_id(self) -> str:
        """The workspace asset reference a deployment names: `azureml:<name>:<version>`."""
        return model_asset_id(self.name, self.version)

    def to_model(self, description: str | None = None) -> Model:
        """The azure-ai-ml model entity that registers this folder (uploaded as-is)."""
        return Model(
            name=self.name,
            version=self.version,
            type=AssetTypes.CUSTOM_MODEL,
            path=str(self.folder),
            description=description or f"{self.source} packaged by azureml-byom",
            tags={
                TAG_CONTENT_HASH: self.content_hash,
                TAG_SOURCE: self.source,
                TAG_REVISION: self.revision,
            },
        )


@dataclass(frozen=True)
class RegisteredModel:
    """The outcome of `register_model`: which version, and whether this call created it."""

    name: str
    version: str
    content_hash: str
    created: bool

    @property
    def asset_id(self) -> str:
        """The workspace asset reference a deployment names."""
        return model_asset_id(self.name, self.version)


def list_files(root: Path, skip: Callable[[Path], bool] | None = None) -> tuple[str, ...]:
    """Relative POSIX paths of every regular file under root (symlinks followed), sorted."""
    root = Path(root)
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if skip is not None and skip(relative):
            continue
        if path.is_file():
            found.append(relative.as_posix())
    return tuple(sorted(found))


def tree_hash(root: Path, files: Iterable[str]) -> str:
    """Streaming sha256 over each file's relative path, size and bytes, in the order given.

    Path and size go in before the bytes so that moving bytes between files, or renaming a file,
    changes the hash.
    """
    digest = hashlib.sha256()
    for relative in files:
        path = Path(root, relative)
        digest.update(relative.encode("utf-8") + b"\0")
        digest.update(struct.pack(">Q", path.stat().st_size))
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return HASH_PREFIX + digest.hexdigest()


def validate_model_folder(folder: Path) -> tuple[str, ...]:
    """Check the folder is a safetensors Hugging Face model; return its files, sorted.

    Raises ModelValidationError naming every offending file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelValidationError(f"{folder} is not a directory")
    if (folder / ".git").exists():
        raise ModelValidationError(
            f"{folder} contains .git: package a clean export (git history is not model content)"
        )
    files = list_files(folder)
    names = {Path(f).name for f in files}

    pickles = [f for f in files if f.lower().endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise ModelValidationError(
            f"{folder} contains pickle weights, which run code when loaded: {', '.join(pickles)}. "
            "Convert them to safetensors (transformers: "
            "`model.save_pretrained(out, safe_serialization=True)`) and remove the pickle files"
        )
    unknown = [f for f in files if not _allowed(f)]
    if unknown:
        raise ModelValidationError(
            f"{folder} contains files that are not part of a safetensors model folder: "
            f"{', '.join(unknown)} (allowed: config, tokenizer, *.safetensors and their index, "
            "*.json, *.txt, *.model, *.jinja, *.md, LICENSE)"
        )
    if "config.json" not in files:
        raise ModelValidationError(f"{folder} has no config.json at its top level")
    _check_json_object(folder / "config.json")
    if not any(all(name in names for name in tokenizer) for tokenizer in TOKENIZER_FILE_SETS):
        raise ModelValidationError(
            f"{folder} has no tokenizer: expected tokenizer.json, tokenizer.model, "
            "or vocab.json with merges.txt"
        )
    weights = [f for f in files if f.endswith(".safetensors")]
    if not weights:
        raise ModelValidationError(f"{folder} has no *.safetensors weights")
    for weight in weights:
        _check_safetensors_header(folder / weight)
    for index in (f for f in files if f.endswith(".safetensors.index.json")):
        _check_shards(folder, index, set(files))
    return files


def package_model(
    name: str, source: ModelSource, download: HubDownloader | None = None
) -> PackagedModel:
    """Resolve, validate and hash a model source (downloading a hub model with `download`)."""
    if isinstance(source, HubModel):
        folder = (download or hub_snapshot)(source.repo_id, source.revision)
        revision = source.revision
    else:
        folder = Path(source.path).expanduser().resolve()
        revision = ""
    files = validate_model_folder(folder)
    return PackagedModel(
        name=name,
        folder=folder,
        files=files,
        content_hash=tree_hash(folder, files),
        source=source.describe(),
        revision=revision,
    )


def register_model(workspace: WorkspaceClient, packaged: PackagedModel) -> RegisteredModel:
    """Register the packaged model unless this exact content is already registered."""
    existing = workspace.get_model(packaged.name, packaged.version)
    if existing is not None:
        registered_hash = (existing.tags or {}).get(TAG_CONTENT_HASH)
        if registered_hash != packaged.content_hash:
            raise AssetConflictError(
                f"model {packaged.name}:{packaged.version} is registered with content hash "
                f"{registered_hash!r}, but the folder hashes to {packaged.content_hash}; "
                "a version must never change its bytes, so archive or rename the conflicting asset"
            )
        return RegisteredModel(
            packaged.name, packaged.version, packaged.content_hash, created=False
        )
    workspace.create_model(packaged.to_model())
    return RegisteredModel(packaged.name, packaged.version, packaged.content_hash, created=True)


def hub_snapshot(repo_id: str, revision: str) -> Path:
    """Download a hub repository at a commit into the local Hugging Face cache (needs network)."""
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            repo_id=repo_id, revision=revision, allow_patterns=list(HUB_ALLOW_PATTERNS)
        )
    )


def parse_source(text: str) -> ModelSource:
    """Parse `hf:<org>/<name>@<commit sha>` or a folder path."""
    if text.startswith("hf:"):
        repo_id, sep, revision = text.removeprefix("hf:").partition("@")
        if not sep:
            raise ValueError(f"hub source {text!r} needs a pinned commit: hf:<org>/<name>@<sha>")
        return HubModel(repo_id, revision)
    return LocalFolder(Path(text))


def _allowed(relative: str) -> bool:
    name = Path(relative).name
    return name in ALLOWED_NAMES or name.startswith("LICENSE") or name.endswith(ALLOWED_SUFFIXES)


def _check_json_object(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelValidationError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelValidationError(f"{path} must hold a JSON object")
    return data


def _check_safetensors_header(path: Path) -> None:
    # A safetensors file starts with a little-endian u64 header length and a JSON header; a Git LFS
    # pointer or a truncated download fails here instead of at model load on a GPU node.
    size = path.stat().st_size
    with path.open("rb") as handle:
        raw = handle.read(8)
        if len(raw) < 8:
            raise ModelValidationError(f"{path} is too short to be safetensors ({size} bytes)")
        (header_len,) = struct.unpack("<Q", raw)
        if header_len == 0 or 8 + header_len > size:
            raise ModelValidationError(
                f"{path} is not a safetensors file (header length {header_len}, file {size} bytes;"
                " a Git LFS pointer or a truncated download?)"
            )
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelValidationError(f"{path} has an unreadable safetensors header") from exc
    if not isinstance(header, dict):
        raise ModelValidationError(f"{path} has a safetensors header that is not an object")


def _check_shards(folder: Path, index: str, files: set[str]) -> None:
    weight_map = _check_json_object(folder / index).get("weight_map", {})
    parent = Path(index).parent
    missing = sorted(
        {shard for shard in weight_map.values() if (parent / shard).as_posix() not in files}
    )
    if missing:
        raise ModelValidationError(f"{index} names shards that are missing: {', '.join(missing)}")
