-- include: _prelude.lua, _tokens.lua, _sessions.lua
-- ARGV: prefix (the hash's bucket), token hash, the user's bucket, ttl (s), the bucket
-- a stale pointer named ('' = none). Spread layout, a hash outside its user's bucket:
-- see claim() in _tokens.lua.
local hash, now = ARGV[2], clock()
return claim(live_user(hash, now) or redis.call('EXISTS', prefix .. 'r:' .. hash) == 1, now)
