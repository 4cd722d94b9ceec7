"""schemathesis hooks for scripts/fuzz-api.sh.

JSON Schema's `integer` admits whole floats such as `9.0`, and schemathesis sends them as valid
integers. The service reads integers strictly, as docs/api.md says (`3`, not `"3"` or `3.0`:
a whole float is answered 422 "invalid type: floating point `3.0`, expected i64"), so whole
floats in generated bodies are written as integers before they are sent. A float field takes
an integer as well, so nothing else changes.
"""

import schemathesis


def _integers(value):
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, list):
        return [_integers(v) for v in value]
    if isinstance(value, dict):
        return {k: _integers(v) for k, v in value.items()}
    return value


@schemathesis.hook
def map_body(context, body):
    return _integers(body)
