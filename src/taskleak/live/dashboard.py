"""The dashboard's static files, shipped in the package (``assets/``): one
HTML page, its script and its style sheet, with no third-party code and
nothing fetched from elsewhere, so it works offline and behind any proxy.
The page reads the JSON endpoints of the same server and draws its charts
itself (SVG)."""

from __future__ import annotations

from importlib import resources

__all__ = ["asset", "ASSETS"]

# name -> content type; nothing outside this table is ever served.
ASSETS: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

_cache: dict[str, bytes] = {}


def asset(name: str) -> tuple[bytes, str] | None:
    """``(content, content type)`` of a dashboard file, None if there is no such file."""
    ctype = ASSETS.get(name)
    if ctype is None:
        return None
    data = _cache.get(name)
    if data is None:
        data = _cache[name] = resources.files(__package__).joinpath("assets").joinpath(name).read_bytes()
    return data, ctype
