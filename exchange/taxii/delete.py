"""TAXII DELETE (TAXII 2.1 section 5.7) on our terms: admins only, every refusal recorded.

medallion's view refuses a DELETE itself when the collection resource says
``can_write: false``, before our backend is asked, so the refusal never reached the
ledger and an admin without a write grant could not delete. :func:`register_delete`
routes DELETE on the object endpoint straight to
:meth:`~exchange.node.withdraw.Withdrawing.delete_object`, which decides (admins only),
records every refusal as a denial, and withdraws the object as a node-signed revocation.
GET on the same endpoint stays medallion's.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request

from exchange.errors import NotFound
from exchange.taxii.http import MEDIA_TYPE_TAXII

__all__ = ["register_delete"]

#: medallion's endpoint for GET and DELETE of one object.
_ENDPOINT = "objects.get_or_delete_object"


def register_delete(app: Flask, api_root_name: str) -> None:
    """Answer DELETE on ``.../objects/<id>/`` from our backend, not medallion's view.

    Args:
        app: The TAXII app, with medallion's blueprints and our backend registered.
        api_root_name: The node's API root.
    """
    medallion_view = app.view_functions[_ENDPOINT]

    def get_or_delete_object(api_root: str, collection_id: str, object_id: str) -> Any:
        if request.method != "DELETE":
            return medallion_view(api_root=api_root, collection_id=collection_id,
                                  object_id=object_id)
        if api_root != api_root_name:
            raise NotFound(f"API root {api_root!r} not found")
        app.medallion_backend.delete_object(  # type: ignore[attr-defined]
            api_root, collection_id, object_id, request.args.to_dict(),
            ("version", "spec_version"))
        return Response(status=200, mimetype=MEDIA_TYPE_TAXII)

    app.view_functions[_ENDPOINT] = get_or_delete_object
