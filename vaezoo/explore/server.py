"""Serving the explore page: check the extra is installed, load the models, bind, run uvicorn."""

from __future__ import annotations

import importlib.util
import ipaddress
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vaezoo.errors import MissingExtraError, UsageError
from vaezoo.registry import get_registry

if TYPE_CHECKING:
    import uvicorn
    from rich.console import Console
    from starlette.applications import Starlette

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def require_extra() -> None:
    """One clear line, before any model is loaded, when the web libraries are missing."""
    missing = []
    for module in ("starlette", "uvicorn"):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules, or half-installed
            found = False
        if not found:
            missing.append(module)
    if missing:
        raise MissingExtraError("vaezoo explore", " and ".join(missing), "explore")


def explore_app(sources: Sequence[Path], *, device: str = "auto", data_dir: str | Path | None = None,
                console: Console | None = None) -> Starlette:
    """The app over the models in `sources` (run folders, exported files, checkpoints), each loaded once."""
    require_extra()
    from vaezoo.explore.app import create_app
    from vaezoo.explore.views import ExploredModel

    if not sources:
        raise UsageError("name at least one run folder or model file to explore")
    registry = get_registry()
    models = []
    for source in sources:
        if console is not None:
            console.print(f"loading {source}", highlight=False)
        models.append(ExploredModel(Path(source), device=device, data_dir=data_dir, registry=registry))
    return create_app(models)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, so that a taken port is one clear line and port 0 picks a free one."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET  # a host name
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port "
                         "or --host") from None
    sock.listen(128)
    return sock


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def server(app: Starlette) -> uvicorn.Server:
    """A uvicorn server for `app`, quiet but for errors; `run(sockets=[bind(...)])` serves it."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))


def serve(sources: Sequence[Path], *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, device: str = "auto",
          data_dir: str | Path | None = None, console: Console) -> None:
    """Take the port, load the models, then serve the page until Ctrl-C."""
    require_extra()
    with bind(host, port) as sock:
        app = explore_app(sources, device=device, data_dir=data_dir, console=console)
        if not ipaddress.ip_address(sock.getsockname()[0]).is_loopback:
            console.print(f"[yellow]warning:[/] listening on {host}: other machines can reach this page "
                          "(it has no login)", highlight=False)
        console.print(f"exploring {len(sources)} model{'s' if len(sources) > 1 else ''} at {url(sock)} "
                      "(Ctrl-C stops)", highlight=False)
        server(app).run(sockets=[sock])
