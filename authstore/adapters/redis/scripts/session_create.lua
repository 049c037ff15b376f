-- ARGV: prefix, token hash, public id, user, ttl (s), cap ('' = none), device, app, ip,
-- agent ('' = none), metadata JSON. The new session and the eviction of the oldest
-- beyond the cap are one atomic step.
local hash, public_id, user = ARGV[2], ARGV[3], ARGV[4]
local ttl, cap = tonumber(ARGV[5]), tonumber(ARGV[6])
local now = clock()
local expires = now + ttl
if cap then
  local others = live_hashes(user, now)
  for position = cap, #others do
    drop(others[position], user)
  end
end
local key = data_key(hash)
local seq = redis.call('INCR', prefix .. 'seq')
redis.call('HSET', key, 'id', public_id, 'user', user, 'created', now, 'seen', now,
  'expires', expires, 'meta', ARGV[11])
local optional = {device = ARGV[7], app = ARGV[8], ip = ARGV[9], agent = ARGV[10]}
for field, value in pairs(optional) do
  if value ~= '' then
    redis.call('HSET', key, field, value)
  end
end
redis.call('PEXPIREAT', key, ms(expires))
redis.call('SET', prefix .. 'i:' .. public_id, hash, 'PXAT', ms(expires))
local index = index_key(user)
redis.call('ZADD', index, seq, hash)
extend_to(index, expires)
return record(key)
