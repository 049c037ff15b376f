-- {fields..., backup codes left} or false.
if redis.call('EXISTS', state) == 0 then
  return false
end
local row = redis.call('HMGET', state, 'enabled', 'secret', 'pending', 'last_step', 'created',
  'updated', 'enabled_at')
row[8] = redis.call('SCARD', codes)
return row
