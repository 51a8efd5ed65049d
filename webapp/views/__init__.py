"""HTML pages: thin blueprints that parse input, call a service and render a template."""

from flask import abort

from ..extensions import db


def get_owned_or_404(model, object_id, owner_id, owner_field: str = "owner_id"):
    """The one way pages load a user's object: someone else's (or a deleted one) is a 404."""
    obj = db.session.get(model, object_id)
    if obj is None or getattr(obj, owner_field) != owner_id or getattr(obj, "deleted_at", None) is not None:
        abort(404)
    return obj
