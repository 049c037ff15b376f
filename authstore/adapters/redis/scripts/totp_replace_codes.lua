-- ARGV: the new code hashes (possibly none).
redis.call('DEL', codes)
if #ARGV > 0 then
  redis.call('SADD', codes, unpack(ARGV))
end
return 1
