-- include: _prelude.lua, _tokens.lua, _links.lua
-- ARGV: prefix, token hash, public id, user, email, ttl (s), app, ip, agent ('' = none),
-- revoke previous ('1' or '0'). The previous unused links go in the same atomic step.
-- False, changing nothing, when the token hash belongs to a link that has not expired
-- (usable, consumed or revoked) or to another bucket.
local hash, user = ARGV[2], ARGV[4]
local now = clock()
local expires = now + tonumber(ARGV[6])
if status(hash, now) or redis.call('EXISTS', pointer_key(hash)) == 1 then
  return false
end
if ARGV[10] == '1' then
  revoke_unused(user, now)
end
local key = data_key(hash)
redis.call('DEL', key)
write_record(key, {'id', ARGV[3], 'user', user, 'email', ARGV[5], 'created', now,
  'expires', expires}, {app = ARGV[7], ip = ARGV[8], agent = ARGV[9]}, expires)
local index = index_key(user)
redis.call('SADD', index, hash)
extend_to(index, expires)
return record(key)
