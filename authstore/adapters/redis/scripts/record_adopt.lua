-- include: _prelude.lua
-- ARGV: prefix (the user's bucket), 'sessions' or 'links', token hash, user, expiry (ms,
-- absolute), public id ('' for a link), then the record's field/value pairs. A record
-- moved from the namespace layout (``authstore migrate``): written in its user's bucket,
-- indexed (a session after the user's sessions already there, in the order they come),
-- its public id kept. 0 when the bucket holds the hash already.
local prefix, kind, hash, user, at = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local key = prefix .. 't:' .. hash
if redis.call('EXISTS', key) == 1 then
  return 0
end
local fields = {}
for position = 7, #ARGV do
  fields[#fields + 1] = ARGV[position]
end
redis.call('HSET', key, unpack(fields))
redis.call('PEXPIREAT', key, at)
local index = prefix .. 'u:' .. user
if kind == 'sessions' then
  redis.call('ZADD', index, redis.call('INCR', prefix .. 'seq'), hash)
  redis.call('SET', prefix .. 'i:' .. ARGV[6], hash, 'PXAT', at)
else
  redis.call('SADD', index, hash)
end
extend_to(index, at / 1000)
return 1
