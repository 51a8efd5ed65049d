"""Building blocks of the OpenAPI document, shared by the API modules that declare their paths."""


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def json_response(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def errors(descriptions: dict[int, str], *codes: int) -> dict:
    """Error responses for `codes`, each an Error object described in the module's own words."""
    return {str(code): json_response(ref("Error"), descriptions[code]) for code in codes}
