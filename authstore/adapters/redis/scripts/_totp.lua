-- One user's TOTP state under the hash tag of that user (KEYS share it):
--   KEYS[1] hash: secret, pending, enabled, enabled_at, last_step, created, updated
--   KEYS[2] set: backup code hashes
local state, codes = KEYS[1], KEYS[2]
