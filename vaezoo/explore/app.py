"""The explore page's web app: a static page and a small JSON/PNG API over the loaded models.

Every request parameter is checked before any model runs; a bad one is a JSON `{"error": ...}`
with a 4xx status (400 bad parameter, 404 unknown run or path, 422 not applicable to that model),
never a traceback. A bug is a JSON 500 whose details stay in the server's log.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from vaezoo.errors import VaezooError
from vaezoo.explore.views import SAMPLERS, ExploredModel

STATIC = Path(__file__).parent / "static"
MAX_IMAGES = 64  # per grid of samples or reconstructions
MAX_STEPS = 16  # decoded images between the two ends of an interpolation
MAX_SEED = 2**31 - 1


class BadRequest(Exception):
    """A request the API refuses; `status` is the HTTP status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class Query:
    """The query parameters of one request, each read once and checked; unknown names are refused."""

    def __init__(self, request: Request, allowed: Sequence[str]):
        unknown = sorted(set(request.query_params) - set(allowed))
        if unknown:
            raise BadRequest(f"unknown parameter {', '.join(unknown)}; this path takes "
                             f"{', '.join(allowed) if allowed else 'none'}")
        self.params = request.query_params

    def integer(self, name: str, low: int, high: int, default: int | None = None) -> int:
        text = self.params.get(name)
        if text is None:
            if default is None:
                raise BadRequest(f"parameter {name} is required (an integer from {low} to {high})")
            return default
        try:
            value = int(text)
        except ValueError:
            raise BadRequest(f"parameter {name} must be an integer, got '{text}'") from None
        if not low <= value <= high:
            raise BadRequest(f"parameter {name} must be from {low} to {high}, got {value}")
        return value

    def choice(self, name: str, choices: Sequence[str], default: str) -> str:
        value = self.params.get(name, default)
        if value not in choices:
            raise BadRequest(f"parameter {name} must be one of {', '.join(choices)}, got '{value}'")
        return value

    def code(self, name: str, limits: Sequence[float]) -> list[float]:
        """A comma-separated code with one value per dimension, each within that dimension's limits."""
        text = self.params.get(name)
        if text is None:
            raise BadRequest(f"parameter {name} is required ({len(limits)} comma-separated numbers)")
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise BadRequest(f"parameter {name} must be comma-separated numbers") from None
        if len(values) != len(limits):
            raise BadRequest(f"parameter {name} must have {len(limits)} values (one per code dimension), "
                             f"got {len(values)}")
        for d, (value, limit) in enumerate(zip(values, limits)):
            if not (math.isfinite(value) and abs(value) <= limit):
                raise BadRequest(f"parameter {name}: dimension {d} must be from {-limit:g} to {limit:g}, got {value:g}")
        return values


def _png(data: bytes) -> Response:
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})


def create_app(models: Sequence[ExploredModel]) -> Starlette:
    """The app serving `models`, addressed by their position (run 0, 1, ...)."""

    def run_of(request: Request) -> ExploredModel:
        text = request.path_params["run"]
        if not (text.isdigit() and int(text) < len(models)):
            raise BadRequest(f"unknown run '{text}'; runs are numbered 0 to {len(models) - 1}", 404)
        return models[int(text)]

    def test_index(query: Query, model: ExploredModel, name: str, default: int | None = None) -> int:
        return query.integer(name, 0, len(model.test) - 1, default)

    def endpoint(allowed: Sequence[str], answer: Callable[[ExploredModel, Query], Response]):
        def handle(request: Request) -> Response:
            query = Query(request, allowed)
            return answer(run_of(request), query)
        return handle

    def list_runs(request: Request) -> Response:
        Query(request, ())
        return JSONResponse([{"run": i, **m.describe()} for i, m in enumerate(models)])

    def loss(model: ExploredModel, query: Query) -> Response:
        return JSONResponse(model.curves)

    def code(model: ExploredModel, query: Query) -> Response:
        return JSONResponse({"code": model.code(test_index(query, model, "image")), "limits": model.limits})

    def decode(model: ExploredModel, query: Query) -> Response:
        return _png(model.decode(query.code("z", model.need_code())))

    def interpolation(model: ExploredModel, query: Query) -> Response:
        a, b = test_index(query, model, "a"), test_index(query, model, "b")
        return _png(model.interpolation(a, b, query.integer("steps", 2, MAX_STEPS, 8)))

    def samples(model: ExploredModel, query: Query) -> Response:
        sampler = query.choice("sampler", list(SAMPLERS), "prior")
        return _png(model.samples(sampler, query.integer("n", 1, MAX_IMAGES, 16), query.integer("seed", 0, MAX_SEED, 0)))

    def reconstructions(model: ExploredModel, query: Query) -> Response:
        start = test_index(query, model, "start", 0)
        return _png(model.reconstructions(start, query.integer("n", 1, min(MAX_IMAGES, len(model.test) - start), 8)))

    def image(model: ExploredModel, query: Query) -> Response:
        return _png(model.image(test_index(query, model, "index")))

    def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    def refused(request: Request, exc: Exception) -> Response:
        if isinstance(exc, BadRequest):
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        if isinstance(exc, HTTPException):  # no such path, wrong method
            return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path}"}, exc.status_code)
        return JSONResponse({"error": str(exc)}, status_code=422)  # a VaezooError: not for this model

    def failed(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server's log"}, 500)

    runs = "/api/runs/{run}"
    routes = [
        Route("/", index),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/api/runs", list_runs),
        Route(f"{runs}/loss", endpoint((), loss)),
        Route(f"{runs}/code", endpoint(("image",), code)),
        Route(f"{runs}/decode.png", endpoint(("z",), decode)),
        Route(f"{runs}/interpolation.png", endpoint(("a", "b", "steps"), interpolation)),
        Route(f"{runs}/samples.png", endpoint(("sampler", "n", "seed"), samples)),
        Route(f"{runs}/reconstructions.png", endpoint(("start", "n"), reconstructions)),
        Route(f"{runs}/image.png", endpoint(("index",), image)),
    ]
    handlers = {BadRequest: refused, HTTPException: refused, VaezooError: refused, Exception: failed}
    return Starlette(routes=routes, exception_handlers=handlers)
