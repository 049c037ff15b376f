-- include: _prelude.lua, _tokens.lua, _sessions.lua
-- ARGV: prefix, token hash, new ttl (s, '' = keep the expiry). Marks the session seen.
-- {bucket} when it lives in that bucket (its pointer here kept at least as long).
local hash = ARGV[2]
local now = clock()
local user = live_user(hash, now)
if not user then
  local elsewhere = redirect(pointer_key(hash))
  if elsewhere and ARGV[3] ~= '' then
    extend_to(pointer_key(hash), now + tonumber(ARGV[3]) + SLACK)
  end
  return elsewhere or false
end
local key = data_key(hash)
redis.call('HSET', key, 'seen', now)
if ARGV[3] ~= '' then
  local expires = now + tonumber(ARGV[3])
  redis.call('HSET', key, 'expires', expires)
  redis.call('PEXPIREAT', key, ms(expires))
  redis.call('PEXPIREAT', prefix .. 'i:' .. redis.call('HGET', key, 'id'), ms(expires))
  extend_to(index_key(user), expires)
end
return record(key)
