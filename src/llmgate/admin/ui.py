"""A static admin UI build (the APISIX Dashboard) at ``/ui/`` on the admin listener.

As APISIX 3.13+ embeds its Dashboard: ``/ui`` redirects to ``/ui/`` (a relative Location), a
file of the build is served as it is, and any other path under ``/ui/`` is the build's
``index.html`` (nginx's ``try_files $uri /index.html``), so the single-page app's own routes
(``/ui/routes/detail/1``) load.  The files are public, as APISIX's: the Dashboard asks for the
admin key itself and sends it with each admin call.

Only files inside the directory are ever served: a path with a ``.`` or ``..`` segment (sent
plainly or percent-encoded), a backslash or a NUL byte is a 404, and a path whose real location
(symlinks followed) is outside the directory is a 404 too.
"""

from __future__ import annotations

import os
from pathlib import Path

from aiohttp import web

from llmgate.errors import NotFound, error_response

UI_PREFIX = "/ui/"
_INDEX = "index.html"
# As APISIX (``expires 7200s``), for the build's assets; the index is revalidated every time,
# so a new build is picked up at once instead of an old index naming assets that are gone.
_ASSET_HEADERS = {"Cache-Control": "private, max-age=7200"}
_INDEX_HEADERS = {"Cache-Control": "no-cache"}
_COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "SAMEORIGIN"}


class UiFiles:
    """The files of one UI build directory, resolved safely."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.root = Path(os.path.realpath(directory))

    def resolve(self, tail: str) -> Path | None:
        """The file to serve for ``/ui/<tail>`` (``tail`` percent-decoded): the file itself,
        the index when there is no such file, None when the path is refused."""
        if "\x00" in tail or "\\" in tail:
            return None
        parts = [part for part in tail.split("/") if part]
        if any(part in (".", "..") for part in parts):
            return None
        real = Path(os.path.realpath(self.root.joinpath(*parts)))
        if not real.is_relative_to(self.root):
            return None  # a symlink that leads out of the directory
        if real.is_file():
            return real
        return self.index

    @property
    def index(self) -> Path | None:
        real = Path(os.path.realpath(self.root / _INDEX))
        return real if real.is_relative_to(self.root) and real.is_file() else None


def add_ui_routes(app: web.Application, directory: str | os.PathLike[str]) -> None:
    """Serve the build in ``directory`` at ``/ui/`` (and redirect ``/ui`` there)."""
    files = UiFiles(directory)

    async def redirect(_request: web.Request) -> web.Response:
        return web.Response(status=301, headers={"Location": UI_PREFIX})

    async def serve(request: web.Request) -> web.StreamResponse:
        path = files.resolve(request.match_info["tail"])
        if path is None:
            return error_response(NotFound({"error_msg": "not found"}))
        extra = _INDEX_HEADERS if path.name == _INDEX else _ASSET_HEADERS
        return web.FileResponse(path, headers={**_COMMON_HEADERS, **extra})

    # Both answer without a key: their names are in auth.OPEN_ROUTES.
    app.router.add_get("/ui", redirect, name="ui-redirect")
    app.router.add_get(UI_PREFIX + "{tail:.*}", serve, name="ui")
