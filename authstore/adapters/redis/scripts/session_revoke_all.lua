-- include: _prelude.lua, _tokens.lua, _sessions.lua
-- ARGV: prefix, user, except token hash ('' = none), except public id ('' = none).
-- Returns how many live sessions were revoked.
local user, keep_hash, keep_id = ARGV[2], ARGV[3], ARGV[4]
local revoked = 0
local now = clock()
for _, hash in ipairs(live_hashes(user, now)) do
  if hash ~= keep_hash and redis.call('HGET', data_key(hash), 'id') ~= keep_id then
    revoke(hash, user, now)
    revoked = revoked + 1
  end
end
return revoked
