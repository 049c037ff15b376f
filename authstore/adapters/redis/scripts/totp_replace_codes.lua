-- include: _totp.lua
-- ARGV: the new code hashes (possibly none). Codes belong to a TOTP state: a user
-- without one (never enrolled, or disabled) gets none.
redis.call('DEL', codes, order)
if #ARGV > 0 and redis.call('EXISTS', state) == 1 then
  redis.call('SADD', codes, unpack(ARGV))
  redis.call('RPUSH', order, unpack(ARGV))
end
return 1
