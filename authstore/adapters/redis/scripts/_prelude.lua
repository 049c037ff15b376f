-- Shared by every authstore script that includes it (its first line names it).
-- Times are epoch seconds read from the server's own clock (TIME), never the client's.
-- A number passed to redis.call() is stored with 17 significant digits (exact), but a
-- Lua number in a reply becomes an integer: times leave a script in microseconds.
-- (string.format would keep them exact too, at several microseconds per call.)
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- A time in a reply: whole microseconds.
local function us(x)
  return math.floor(x * 1000000 + 0.5)
end

-- An absolute expiry for PEXPIREAT / PXAT: whole milliseconds, never earlier than asked.
local function ms(at)
  return math.ceil(at * 1000)
end

-- Keep a key at least until `at` (an index outlives every member it lists).
local function extend_to(key, at)
  local current = redis.call('PEXPIRETIME', key)
  local wanted = math.ceil(at * 1000)
  if current >= 0 and current < wanted or current == -1 then
    redis.call('PEXPIREAT', key, ms(at))
  end
end

-- Non-negative decimal integers of any size, compared without going through doubles.
local function int_less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
