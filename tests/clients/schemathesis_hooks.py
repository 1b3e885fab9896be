"""Schemathesis hooks for CI (loaded through SCHEMATHESIS_HOOKS by tests/tests/e2e/clients.rs).

A real client sends a fresh Idempotency-Key for each operation it means once. Schemathesis
reuses short generated values ("0", "00"…) across unrelated requests, so a later create with a
key already used replays the first answer (`Idempotent-Replayed: true`) for an object a test
may have deleted since, which its resource checks then report as "created but not found".
Valid keys (1 to 255 characters) are therefore made unique; invalid ones (empty, too long)
are left as generated, so their refusal is still tested. Replays themselves are covered by the
e2e suite (`idempotency.rs`).
"""

import uuid

import schemathesis


@schemathesis.hook
def map_headers(context, headers):
    if headers and "Idempotency-Key" in headers:
        key = headers["Idempotency-Key"]
        if isinstance(key, str) and 1 <= len(key) <= 255:
            headers["Idempotency-Key"] = f"st-{uuid.uuid4()}"
    return headers
