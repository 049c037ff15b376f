-- include: _prelude.lua, _tokens.lua, _links.lua
-- ARGV: prefix, token hash, application id ('' = none). Single use: the one caller
-- that finds the link usable (and bound to this application) marks it consumed.
-- {bucket} when it lives in that bucket.
local hash = ARGV[2]
local now = clock()
local state = status(hash, now)
if state ~= 'usable' then
  return not state and redirect(pointer_key(hash)) or false
end
local key = data_key(hash)
if (redis.call('HGET', key, 'app') or '') ~= ARGV[3] then
  return false
end
redis.call('HSET', key, 'consumed', now)
return record(key)
