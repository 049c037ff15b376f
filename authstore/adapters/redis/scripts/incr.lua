-- KEYS[1] value key; ARGV: delta (decimal), ttl in ms ('' = none, applied only on creation).
-- Returns the new value as text (exact over 64 bits), or false when the stored value
-- is not an integer or the sum leaves 64 bits (nothing is changed then).
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then
  if ARGV[2] == '' then
    redis.call('SET', key, ARGV[1])
  else
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  end
  return ARGV[1]
end
local reply = redis.pcall('INCRBY', key, ARGV[1])
if type(reply) == 'table' and reply.err then
  return false
end
return redis.call('GET', key)
