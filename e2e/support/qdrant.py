"""The few calls of Qdrant's HTTP API the suite checks results with (stdlib only, every call timed out)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable

TIMEOUT_SECONDS = 15.0
SCROLL_PAGE = 256
MAX_POINTS = 20_000


class QdrantError(RuntimeError):
    pass


class QdrantHTTP:
    def __init__(self, base_url: Callable[[], str]):
        self.base_url = base_url  # a callable: the port-forward may have been restarted

    def _call(self, method: str, path: str, body: dict | None = None, missing_ok: bool = False) -> dict | None:
        url = self.base_url() + path
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and missing_ok:
                return None
            raise QdrantError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:500]!r}") from None
        except (urllib.error.URLError, TimeoutError) as exc:
            raise QdrantError(f"{method} {path}: {exc}") from None

    def collection(self, name: str) -> dict | None:
        body = self._call("GET", f"/collections/{name}", missing_ok=True)
        return body["result"] if body else None

    def delete_collection(self, name: str) -> None:
        self._call("DELETE", f"/collections/{name}", missing_ok=True)

    def count(self, name: str) -> int:
        body = self._call("POST", f"/collections/{name}/points/count", {"exact": True})
        return int(body["result"]["count"])

    def points(self, name: str) -> list[dict]:
        """Every point with its payload (no vectors), page by page, bounded by MAX_POINTS."""
        out: list[dict] = []
        offset = None
        while len(out) < MAX_POINTS:
            query = {"limit": SCROLL_PAGE, "with_payload": True, "with_vector": False}
            if offset is not None:
                query["offset"] = offset
            result = self._call("POST", f"/collections/{name}/points/scroll", query)["result"]
            out += result["points"]
            offset = result.get("next_page_offset")
            if offset is None:
                return out
        raise QdrantError(f"collection {name} has more than {MAX_POINTS} points; the e2e jobs write far fewer")
