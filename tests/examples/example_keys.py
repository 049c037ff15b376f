"""Test keys for the example apps (never use these anywhere else)."""

import base64

TOTP_KEYS = (
    f"old:{base64.b64encode(bytes(32)).decode()},k1:{base64.b64encode(bytes(range(32))).decode()}"
)
JWT_SECRET = "a test secret, 32 bytes or longer, for HS256"
