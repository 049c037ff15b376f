-- include: _prelude.lua, _tokens.lua, _links.lua
-- ARGV: prefix (the hash's bucket), token hash, the user's bucket, ttl (s), the bucket
-- a stale pointer named ('' = none). Spread layout, a hash outside its user's bucket:
-- see claim() in _tokens.lua.
local now = clock()
return claim(status(ARGV[2], now) ~= nil, now)
