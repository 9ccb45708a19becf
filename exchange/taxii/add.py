"""TAXII Add Objects (TAXII 2.1 section 5.5) with every refusal recorded.

medallion's view asks the collection resource whether ``can_write`` is true and answers
403 itself when it is not, before our backend is asked: a consumer's refused POST never
reached :meth:`~exchange.node.publish.Publishing.publish`, so the ledger did not hear of
it. :func:`register_add` routes POST on the objects endpoint straight to the backend,
whose ``publish`` decides: a collection the account may not write is a denial
(``deny-no-write-grant``), one it may not see either is a ``deny-no-grant`` or
``deny-no-such-collection`` denial, each with the same answer medallion gave (403 or
404, as a TAXII error message). The media-type, length and size checks of a POST run
before any view (:func:`exchange.taxii.app.create_app`). GET on the same endpoint stays
medallion's.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request

from exchange.errors import NotFound
from exchange.taxii.http import MEDIA_TYPE_TAXII, dumps

__all__ = ["register_add"]

#: medallion's endpoint for GET and POST of a collection's objects.
_ENDPOINT = "objects.get_or_add_objects"


def register_add(app: Flask, api_root_name: str) -> None:
    """Answer POST on ``.../objects/`` from our backend, not medallion's view.

    Args:
        app: The TAXII app, with medallion's blueprints and our backend registered.
        api_root_name: The node's API root.
    """
    medallion_view = app.view_functions[_ENDPOINT]

    def get_or_add_objects(api_root: str, collection_id: str) -> Any:
        if request.method != "POST":
            return medallion_view(api_root=api_root, collection_id=collection_id)
        if api_root != api_root_name:
            raise NotFound(f"API root {api_root!r} not found")
        status = app.medallion_backend.add_objects(  # type: ignore[attr-defined]
            api_root, collection_id, None, None)
        return Response(dumps(status), status=202, mimetype=MEDIA_TYPE_TAXII)

    app.view_functions[_ENDPOINT] = get_or_add_objects
