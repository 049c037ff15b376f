-- ARGV: the new code hashes (possibly none).
redis.call('DEL', codes, order)
if #ARGV > 0 then
  redis.call('SADD', codes, unpack(ARGV))
  redis.call('RPUSH', order, unpack(ARGV))
end
return 1
