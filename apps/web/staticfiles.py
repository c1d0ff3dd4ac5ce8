"""Browser code that ships inside installed Python packages, served as static files.

The pages chart with plotly.js, which the `plotly` wheel carries (`plotly/package_data/plotly.min.js`).
It is served from there, under `/static/vendor/`, by the same machinery as the site's own files (the
ASGI static handler in the embedded mode, `collectstatic` elsewhere): nothing minified is committed to
the repository and nothing is fetched from a CDN at run time. Only the files named here are exposed,
not the rest of the package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from django.contrib.staticfiles.finders import BaseFinder
from django.core.checks import Error
from django.core.files.storage import FileSystemStorage

VENDOR_PREFIX = "vendor"
# static path under vendor/ -> (package, path inside the package)
PACKAGED_FILES = {
    "plotly.min.js": ("plotly", "package_data/plotly.min.js"),
}


def packaged_file(name: str) -> Path | None:
    """Where the installed package keeps `name` (a key of PACKAGED_FILES), without importing it."""
    package, relative = PACKAGED_FILES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.is_file() else None


class PackagedFilesFinder(BaseFinder):
    def check(self, **kwargs):
        return [
            Error(f"{PACKAGED_FILES[name][0]} is not installed, or lacks {PACKAGED_FILES[name][1]}.", id="web.E001")
            for name in PACKAGED_FILES
            if packaged_file(name) is None
        ]

    def find(self, path, find_all=False, **kwargs):
        prefix, _, name = path.partition("/")
        found = packaged_file(name) if prefix == VENDOR_PREFIX and name in PACKAGED_FILES else None
        if found is None:
            return []  # as Django's own finders answer: an empty list, whichever the mode
        return [str(found)] if find_all else str(found)

    def list(self, ignore_patterns):
        for name in PACKAGED_FILES:
            path = packaged_file(name)
            if path is None:
                continue
            storage = FileSystemStorage(location=path.parent)
            storage.prefix = VENDOR_PREFIX  # collectstatic copies it to vendor/<name>
            yield path.name, storage
