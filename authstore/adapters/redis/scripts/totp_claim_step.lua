-- include: _prelude.lua, _totp.lua
-- ARGV: step (decimal). Atomic compare-and-set: 1 only for a step later than the last.
local last = redis.call('HGET', state, 'last_step')
if redis.call('EXISTS', state) == 0 or (last and not int_less(last, ARGV[1])) then
  return 0
end
redis.call('HSET', state, 'last_step', ARGV[1], 'updated', clock())
return 1
