-- KEYS[1] a record; ARGV: '1' and the body read, or '0' when none was; the new body;
-- its TTL in ms. Writes only if the record is still what was read (compare-and-set).
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then
    return 0
  end
elseif current then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
return 1
