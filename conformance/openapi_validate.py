"""Validates qwen2api's OpenAPI document with an independent validator (openapi-spec-validator).

Fetches QWEN2API_OPENAPI_URL (the running server's /openapi.json), validates it against the
OpenAPI schema of its declared version (3.1), and prints what it checked. Exits non-zero, with
the validator's message, when the document is invalid.
"""

import json
import os
import sys
import urllib.request

from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError


def main() -> int:
    url = os.environ["QWEN2API_OPENAPI_URL"]
    with urllib.request.urlopen(url, timeout=10) as resp:
        spec = json.load(resp)
    try:
        validate(spec)
    except OpenAPIValidationError as e:
        print(f"invalid OpenAPI document at {url}: {e}", file=sys.stderr)
        return 1
    operations = sum(len(item) for item in spec["paths"].values())
    print(
        f"openapi {spec['openapi']}: valid; {len(spec['paths'])} paths, {operations} operations, "
        f"{len(spec['components']['schemas'])} schemas"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
