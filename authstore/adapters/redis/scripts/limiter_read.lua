-- include: _prelude.lua
-- KEYS[1] limiter; ARGV[1] its algorithm ('f', 's' or 'g'). Reads the state the
-- limiter scripts keep, writing nothing. Fixed window: {1, count, ms left} (the
-- window's end relative to now); sliding: {1, previous, current, start, now in us};
-- GCRA: {1, anchor, units, now in us}; {0} when there is no state. Stored numbers
-- come back as the text Redis keeps (exact); ``now`` never before the last hit's.
local key, kind = KEYS[1], ARGV[1]
if kind == 'f' then
  local left = redis.call('PTTL', key)
  if left <= 0 then
    return {0}
  end
  return {1, redis.call('GET', key), left}
end
local now = clock()
local fields
if kind == 's' then
  fields = redis.call('HMGET', key, 'previous', 'current', 'start', 'touched')
else
  fields = redis.call('HMGET', key, 'anchor', 'units', 'touched')
end
local touched = tonumber(fields[#fields])
if touched and touched > now then
  now = touched
end
if not fields[1] then
  return {0}
end
if kind == 's' then
  return {1, fields[1], fields[2], fields[3], us(now)}
end
return {1, fields[1], fields[2], us(now)}
