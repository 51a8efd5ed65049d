"""Pictor Worker App: pairs with the portal, runs render and upscale tasks, reports and earns."""

__version__ = "0.1.0"
