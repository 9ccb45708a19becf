"""Asking a node what it holds: its search endpoint and its key registry, over HTTP.

``exchange search`` and ``exchange show`` run on a member's side against any node: they
send the account's API key as the HTTP Basic password to the node's project endpoints
below the API root (``<api root>/cx/search/``, ``<api root>/cx/registry/``), with a
timeout on every request. What comes back is checked to be the JSON object expected;
signature checks are left to :mod:`exchange.member.verification`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import requests

from exchange.errors import RemoteError

__all__ = ["NodeClient"]

_TIMEOUT: Final = 30.0
_ACCEPT: Final = "application/taxii+json;version=2.1"


@dataclass(frozen=True)
class NodeClient:
    """One account's view of a node's API root (``https://hub.example/cx/``).

    Attributes:
        api_root_url: The API root's URL.
        user: The account name.
        api_key: The account's API key (never shown in the repr).
        verify: TLS verification: True, False (``--insecure``) or a CA bundle path.
    """

    api_root_url: str
    user: str
    api_key: str
    verify: bool | str = True

    def __repr__(self) -> str:
        return f"NodeClient({self.api_root_url!r}, user={self.user!r}, api_key='********')"

    def _get(self, path: str, params: dict[str, str] | None = None) -> requests.Response:
        base = self.api_root_url if self.api_root_url.endswith("/") else self.api_root_url + "/"
        target = f"{base}cx/{path}"
        try:
            response = requests.get(target, params=params, auth=(self.user, self.api_key),
                                    headers={"Accept": _ACCEPT}, timeout=_TIMEOUT,
                                    verify=self.verify)
        except requests.RequestException as e:
            raise RemoteError(f"cannot reach {target}: {type(e).__name__}") from None
        if response.status_code != 200:
            try:
                detail = response.json().get("description", "")
            except (ValueError, AttributeError):
                detail = ""
            raise RemoteError(f"{target}: HTTP {response.status_code}"
                              + (f": {detail}" if detail else ""))
        return response

    def get_json(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """The JSON object a project endpoint (``<api root>/cx/<path>``) answers.

        Raises:
            RemoteError: The node could not be reached, refused (with its description),
                or did not answer with a JSON object.
        """
        response = self._get(path, params)
        try:
            document = response.json()
        except ValueError:
            raise RemoteError(f"the node's {path} did not answer with JSON") from None
        if not isinstance(document, dict):
            raise RemoteError(f"the node's {path} did not answer with a JSON object")
        return document

    def _document(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        document = self.get_json(path, params)
        if not isinstance(document.get("hits"), list):
            raise RemoteError(f"the node's {path} did not answer with a list of hits")
        return document

    def search(self, value: str, *, subdomains: bool = False, limit: int = 100,
               after: str | None = None) -> dict[str, Any]:
        """One page of the objects naming ``value`` that the account may receive.

        Raises:
            RemoteError: The node could not be reached or refused (its reason included).
        """
        params = {"value": value, "limit": str(limit)}
        if subdomains:
            params["subdomains"] = "true"
        if after is not None:
            params["next"] = after
        return self._document("search/", params)

    def search_all(self, value: str, *, subdomains: bool = False,
                   limit: int = 1000) -> dict[str, Any]:
        """Every hit for ``value``, following ``next`` until the node has no more, up to
        ``limit`` hits (``more`` is true in the answer when some were left).

        Raises:
            RemoteError: The node could not be reached or refused.
        """
        hits: list[Any] = []
        after: str | None = None
        while True:
            page = self.search(value, subdomains=subdomains,
                               limit=min(1000, max(1, limit - len(hits))), after=after)
            hits.extend(page["hits"])
            after = page.get("next") if page.get("more") else None
            if after is None or len(hits) >= limit:
                return {"query": page.get("query", value), "hits": hits,
                        "more": after is not None}

    def lookup(self, object_id: str) -> dict[str, Any]:
        """The newest version of an object the account may receive, per collection.

        Raises:
            RemoteError: The node could not be reached or refused.
        """
        return self._document("search/", {"id": object_id})

    def registry(self) -> bytes:
        """The node's published key registry (to check signatures offline).

        Raises:
            RemoteError: The node could not be reached or refused.
        """
        return self._get("registry/").content
