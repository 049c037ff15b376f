-- KEYS[1] value key; ARGV: ttl in ms ('' = remove the expiry). 1 if the key exists.
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then
  return 0
end
if ARGV[1] == '' then
  redis.call('PERSIST', key)
else
  redis.call('PEXPIRE', key, ARGV[1])
end
return 1
