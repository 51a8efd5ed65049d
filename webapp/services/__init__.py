"""The domain: plain functions over the models, shared by pages, the JSON API and the scheduler."""

import unicodedata
from dataclasses import dataclass


def is_single_line(text: str) -> bool:
    """No control characters, lone surrogates or line breaks: the rule for names and labels."""
    return not any(unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") for ch in text)


@dataclass
class Page:
    """One page of a list: what pages and the API's {items, page, pages, total} are made from."""
    items: list
    page: int
    pages: int
    total: int
    per_page: int = 25


class ServiceError(Exception):
    """A rule said no. `code` is the short machine name, `message` tells the user what to do."""

    status = 400

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status


class NotFound(ServiceError):
    status = 404

    def __init__(self, what: str = "object"):
        super().__init__("not_found", f"No such {what}.")


class Conflict(ServiceError):
    status = 409
