-- include: _totp.lua
-- {fields..., backup codes left, {unused code hashes in the order given}} or false.
if redis.call('EXISTS', state) == 0 then
  return false
end
local row = redis.call('HMGET', state, 'enabled', 'secret', 'pending', 'last_step', 'created',
  'updated', 'enabled_at')
local unused = {}
if redis.call('EXISTS', order) == 1 then
  for _, hash in ipairs(redis.call('LRANGE', order, 0, -1)) do
    if redis.call('SISMEMBER', codes, hash) == 1 then
      unused[#unused + 1] = hash
    end
  end
else
  unused = redis.call('SMEMBERS', codes) -- stored before the order was kept
  table.sort(unused)
end
row[8] = #unused
row[9] = unused
return row
