-- include: _prelude.lua, _totp.lua
-- ARGV: secret (ciphertext bytes).
local now = clock()
redis.call('HSETNX', state, 'created', now)
redis.call('HSETNX', state, 'enabled', '0')
redis.call('HSET', state, 'pending', ARGV[1], 'updated', now)
return 1
