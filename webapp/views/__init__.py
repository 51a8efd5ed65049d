"""HTML pages: thin blueprints that parse input, call a service and render a template.

Objects are loaded through `services.permissions`; the NotFound it raises for someone else's object
becomes the same 404 page as a missing one (webapp/__init__.py's error handlers).
"""
