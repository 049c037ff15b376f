-- include: _totp.lua
-- Forget the secret, the backup codes and the replay state. 1 when there was a state.
local existed = redis.call('DEL', state)
redis.call('DEL', codes, order)
return existed
