-- Shared by the sessions' and the magic links' scripts, included before _sessions.lua or
-- _links.lua, which sets FIELDS (a record's fields, in the order replies give them).
-- ARGV[1] is the key prefix of the namespace (layout=namespace) or of one of its buckets
-- (layout=spread), hash tag included: <prefix>t:<token hash> holds a record,
-- <prefix>u:<user id> the user's index of token hashes. In the spread layout a record
-- lives in its user's bucket; when its hash falls in another bucket (a caller-supplied
-- or pre-hashed token), <prefix>p:<token hash> in the hash's bucket names the user's
-- bucket (a pointer: it holds the hash for that bucket and outlives the record).
local FIELDS
local prefix = ARGV[1]
local SLACK = 2 -- seconds a pointer outlives its record (clock differences between masters)

local function data_key(hash) return prefix .. 't:' .. hash end
local function index_key(user) return prefix .. 'u:' .. user end
local function pointer_key(hash) return prefix .. 'p:' .. hash end

-- The reply that sends the caller to the bucket a pointer names: {bucket}, else nil.
local function redirect(key)
  local bucket = redis.call('GET', key)
  if bucket then
    return {tonumber(bucket)}
  end
  return nil
end

-- Claim the hash ARGV[2] for a record of bucket ARGV[3] living ARGV[4] seconds (spread
-- layout, in the hash's bucket): 1 with the pointer set or extended; 0 when the hash is
-- `taken` here or points to another bucket's record; {bucket} when it points to another
-- bucket but past that record's expiry (the pointer's last SLACK seconds): the caller
-- checks that bucket and claims again with ARGV[5] = that bucket, replacing the pointer.
-- With ARGV[3] = '' only says whether the hash is taken here (1) or not (0).
local function claim(taken, now)
  if ARGV[3] == '' then
    return taken and 1 or 0
  end
  if taken then
    return 0 -- the record lives here: the hash is not free for another bucket
  end
  local key = pointer_key(ARGV[2])
  local current = redis.call('GET', key)
  local until_ = now + tonumber(ARGV[4]) + SLACK
  if current and current ~= ARGV[3] and current ~= ARGV[5] then
    if redis.call('PTTL', key) <= SLACK * 1000 then
      return {tonumber(current)}
    end
    return 0
  end
  if current == ARGV[3] then
    extend_to(key, until_)
  else
    redis.call('SET', key, ARGV[3], 'PXAT', ms(until_))
  end
  return 1
end

local function record(key)
  return redis.call('HMGET', key, unpack(FIELDS))
end

-- A new record at `key`: `fields` (name, value, ...), then each `optional` field that is
-- not '' (an absent one stays absent); it expires physically at `expires`.
local function write_record(key, fields, optional, expires)
  redis.call('HSET', key, unpack(fields))
  for field, value in pairs(optional) do
    if value ~= '' then
      redis.call('HSET', key, field, value)
    end
  end
  redis.call('PEXPIREAT', key, ms(expires))
end
