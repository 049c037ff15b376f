-- include: _prelude.lua, _tokens.lua, _sessions.lua
-- ARGV: prefix, token hash, public id, user, ttl (s), cap ('' = none), device, app, ip,
-- agent ('' = none), metadata JSON. The new session and the eviction of the oldest
-- beyond the cap are one atomic step. False, changing nothing, when the token hash
-- belongs to a session that has not expired, live or revoked, or to another bucket.
local hash, public_id, user = ARGV[2], ARGV[3], ARGV[4]
local ttl, cap = tonumber(ARGV[5]), tonumber(ARGV[6])
local now = clock()
local expires = now + ttl
local key = data_key(hash)
if taken(hash, now) then
  return false
end
local old_user = redis.call('HGET', key, 'user')
if old_user then
  drop(hash, old_user) -- expired, not yet reclaimed: none of it may leak into the new one
end
if cap then
  local others = live_hashes(user, now)
  for position = cap, #others do
    revoke(others[position], user, now)
  end
end
local seq = redis.call('INCR', prefix .. 'seq')
write_record(key, {'id', public_id, 'user', user, 'created', now, 'seen', now,
  'expires', expires, 'meta', ARGV[11]}, {device = ARGV[7], app = ARGV[8], ip = ARGV[9],
  agent = ARGV[10]}, expires)
redis.call('SET', prefix .. 'i:' .. public_id, hash, 'PXAT', ms(expires))
local index = index_key(user)
redis.call('ZADD', index, seq, hash)
extend_to(index, expires)
return record(key)
