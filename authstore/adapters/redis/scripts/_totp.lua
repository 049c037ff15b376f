-- One user's TOTP state under the hash tag of that user (KEYS share it):
--   KEYS[1] hash: secret, pending, enabled, enabled_at, last_step, created, updated
--   KEYS[2] set: backup code hashes (use_backup_code removes one with SREM)
--   KEYS[3] list: the hashes in the order given (the set says which are unused)
local state, codes, order = KEYS[1], KEYS[2], KEYS[3]
