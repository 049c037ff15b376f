-- include: _prelude.lua
-- KEYS[1] an instant (blacklist entry, user revocation); ARGV: at (epoch seconds,
-- '' = the server's now), ttl in ms ('' = forever).
-- The instant only moves forward and the entry only ever lives longer: a second,
-- shorter call can never un-revoke. Returns the instant stored.
local key = KEYS[1]
local instant = clock()
if ARGV[1] ~= '' then
  instant = tonumber(ARGV[1])
end
local old = redis.call('GET', key)
local stored = old and tonumber(old)
local remaining = redis.call('PTTL', key)
local ttl = ARGV[2]
if stored and stored >= instant then
  instant = stored
else
  redis.call('SET', key, instant, 'KEEPTTL')
end
if remaining == -2 then
  -- new (or expired) entry: SET KEEPTTL above left it without expiry
  if ttl ~= '' then
    redis.call('PEXPIRE', key, ttl)
  end
elseif remaining >= 0 then
  if ttl == '' then
    redis.call('PERSIST', key)
  elseif tonumber(ttl) > remaining then
    redis.call('PEXPIRE', key, ttl)
  end
end
return redis.call('GET', key) -- the stored text: exact, where a number reply would be truncated
