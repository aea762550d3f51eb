"""Models on the Hugging Face Hub: `hf://OWNER/NAME[@REVISION]` read through huggingface_hub, and pushes.

Reading goes through huggingface_hub's cache and honours its offline mode (HF_HUB_OFFLINE=1) and
HF_HOME. Only config.json and model.safetensors are downloaded, never code; what arrives is
untrusted like any file and read by the same checks (safetensors only, metadata and content hash
verified). Needs `pip install 'vaezoo[hub]'`. See docs/hub.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from vaezoo import __version__
from vaezoo.errors import UsageError, VaezooError, WeightsError
from vaezoo.extras import require
from vaezoo.storage.runs import CONFIG, MODEL

SCHEME = "hf://"
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
REPO_ID = re.compile(rf"{_PART}/{_PART}")
REVISION = re.compile(r"[A-Za-z0-9._/-]{1,200}")
#: What a vaezoo model on the Hub consists of; nothing else is fetched.
FILES = (MODEL, CONFIG)


def is_hub(source: object) -> bool:
    return isinstance(source, str) and source.startswith(SCHEME)


@dataclass(frozen=True)
class HubModel:
    """hf://OWNER/NAME[@REVISION], checked."""

    repo_id: str
    revision: str | None = None

    @property
    def name(self) -> str:
        return self.repo_id.split("/", 1)[1]

    def __str__(self) -> str:
        return f"{SCHEME}{self.repo_id}" + (f"@{self.revision}" if self.revision else "")


def parse(source: str) -> HubModel:
    repo_id, _, revision = source[len(SCHEME):].partition("@") if is_hub(source) else (source, "", "")
    if not REPO_ID.fullmatch(repo_id) or ".." in repo_id or (revision and not REVISION.fullmatch(revision)):
        raise UsageError(f"'{source}' is not a Hub model: write hf://OWNER/NAME or hf://OWNER/NAME@REVISION")
    return HubModel(repo_id, revision or None)


def _hub(feature: str) -> ModuleType:
    return require("huggingface_hub", feature=feature, extra="hub", package="huggingface_hub")


def download(source: str) -> Path:
    """The local folder (in huggingface_hub's cache) holding the model `source` names."""
    hub = _hub("hf:// models")
    model = parse(source)
    errors = hub.errors
    try:
        return Path(hub.snapshot_download(model.repo_id, revision=model.revision, allow_patterns=list(FILES),
                                          library_name="vaezoo", library_version=__version__))
    except errors.LocalEntryNotFoundError:
        offline = " with offline mode on (HF_HUB_OFFLINE=1)" if hub.constants.HF_HUB_OFFLINE else ""
        raise WeightsError(f"{model} is not in the local Hugging Face cache ({hub.constants.HF_HUB_CACHE}) and "
                           f"cannot be downloaded{offline}; connect once, or copy the cache") from None
    except errors.RevisionNotFoundError:
        raise WeightsError(f"{model}: the Hub model has no revision '{model.revision}'") from None
    except errors.RepositoryNotFoundError:
        raise WeightsError(f"{model}: no such model on the Hub (a private one needs `hf auth login`)") from None
    except (errors.HfHubHTTPError, OSError) as exc:
        raise WeightsError(f"{model} could not be downloaded: {_first_line(exc)}") from None


@dataclass(frozen=True)
class PushTarget:
    """Where `vaezoo push` uploads, with the token it uploads with (checked before anything is exported)."""

    model: HubModel
    token: str


def push_target(repo_id: str) -> PushTarget:
    hub = _hub("vaezoo push")
    model = parse(f"{SCHEME}{repo_id}")
    if model.revision:
        raise UsageError(f"vaezoo push {repo_id}: name the repository as OWNER/NAME, without @REVISION")
    token = hub.get_token()
    if not token:
        raise UsageError("vaezoo push needs a Hugging Face token: run `hf auth login` or set HF_TOKEN")
    return PushTarget(model, token)


def push(folder: Path, target: PushTarget, *, private: bool = False, message: str | None = None) -> str:
    """Upload an exported folder (`export --format hf`) as the Hub model `target`; returns its address."""
    hub = _hub("vaezoo push")
    repo_id = target.model.repo_id
    api = hub.HfApi(token=target.token, library_name="vaezoo", library_version=__version__)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder),
                          commit_message=message or f"Upload {target.model.name} with vaezoo {__version__}")
    except (hub.errors.HfHubHTTPError, OSError) as exc:
        raise VaezooError(f"pushing to {repo_id} failed: {_first_line(exc)}") from None
    return str(url)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
