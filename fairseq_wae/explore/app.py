"""The web application: one HTML page, its script and style, plotly.min.js (from the installed plotly
package, so the page needs no network), and JSON routes that run an :class:`ExploreService`, behind
the checks of ``guard`` (host, origin, token, body size).

Why FastAPI: a small, well-kept server; its routes here are ``async``, so the page and its files are
answered by the event loop at once while the model's requests wait for the model's own thread
(``worker``), and a full queue is refused (503) rather than held; plotly draws the 10,000-point map in
the browser, offline. The page names no file: the files served are a fixed list, and the model and
corpus are given on the command line only. Its URLs are relative, so it works behind a path prefix.

A refused request answers 400 with ``{"error": message}``, which the page shows; an unexpected failure
answers 500 the same way and is logged; the server goes on serving either way.
"""
import asyncio
import json
import logging
import os
from concurrent.futures import Future
from typing import Callable, Iterable, Optional

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from fairseq_wae.explore.guard import Guard
from fairseq_wae.explore.service import ExploreService
from fairseq_wae.explore.worker import Busy

logger = logging.getLogger(__name__)

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


def plotly_bundle() -> str:
    """The plotly.min.js that the plotly Python package ships (its offline mode's copy)."""
    import plotly

    return os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


async def _answer(run: Callable[[dict], Future], request: Request) -> JSONResponse:
    try:
        body = json.loads(await request.body())
    except ValueError:  # not JSON, or not UTF-8
        return JSONResponse({"error": "the request is not JSON: send the page's fields as a JSON object"}, status_code=400)
    if not isinstance(body, dict):
        return JSONResponse({"error": "the request must be a JSON object of the page's fields"}, status_code=400)
    try:
        return JSONResponse(await asyncio.wrap_future(run(body)))
    except Busy as e:
        return JSONResponse({"error": str(e)}, status_code=503)
    except (ValueError, TypeError) as e:  # InputError, and the interface's own refusals (they name the argument)
        return JSONResponse({"error": str(e)}, status_code=400)
    except Exception as e:  # noqa: BLE001  (the page shows it; the server keeps serving)
        logger.exception("request failed")
        return JSONResponse({"error": f"the model failed on this request: {type(e).__name__}: {e}"}, status_code=500)


def create_app(service: ExploreService, hosts: Iterable[str] = (), token: Optional[str] = None) -> Guard:
    """The page's application behind the guard: answering for loopback and ``hosts``, asking for ``token``
    when one is given."""
    app = FastAPI(title="fairseq-wae-explore", docs_url=None, redoc_url=None, openapi_url=None)
    # read once, answered from memory in one piece: a file streamed in blocks takes a turn of the
    # interpreter per block, which the model's thread holds for milliseconds at a time
    files = {name: (read_bytes(path), media_type) for name, (path, media_type) in {
        "index.html": (os.path.join(STATIC, "index.html"), "text/html"),
        "explore.js": (os.path.join(STATIC, "explore.js"), "text/javascript"),
        "explore.css": (os.path.join(STATIC, "explore.css"), "text/css"),
        "plotly.min.js": (plotly_bundle(), "text/javascript")}.items()}

    def answer_file(name: str) -> Response:
        content, media_type = files[name]
        return Response(content=content, media_type=media_type)

    @app.get("/")
    async def page():
        return answer_file("index.html")

    @app.get("/static/{name}")
    async def static(name: str):
        if name not in files or name == "index.html":  # a key of the fixed list, never a path
            return JSONResponse({"error": f"no file {name!r}"}, status_code=404)
        return answer_file(name)

    @app.get("/api/card")
    async def card():
        return JSONResponse(service.describe())

    routes = {"reconstruct": service.reconstruct, "interpolate": service.interpolate, "sample": service.sample,
              "neighbours": service.neighbours, "map": service.map}
    for name, run in routes.items():
        app.add_api_route(f"/api/{name}", _route(run), methods=["POST"], name=name)
    return Guard(app, hosts, token)


def _route(run: Callable[[dict], Future]):
    async def route(request: Request):
        return await _answer(run, request)

    return route
