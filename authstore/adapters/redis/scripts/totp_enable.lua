-- include: _prelude.lua, _totp.lua
-- The pending secret becomes the secret. 0 when nothing is pending.
local pending = redis.call('HGET', state, 'pending')
if not pending then
  return 0
end
local now = clock()
redis.call('HSET', state, 'secret', pending, 'enabled', '1', 'enabled_at', now, 'updated', now)
redis.call('HDEL', state, 'pending')
return 1
