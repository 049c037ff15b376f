-- Shared by the sessions' and the magic links' scripts, included before _sessions.lua or
-- _links.lua, which sets FIELDS (a record's fields, in the order replies give them).
-- ARGV[1] is the namespace's key prefix, hash tag included: <prefix>t:<token hash> holds
-- a record, <prefix>u:<user id> the user's index of token hashes.
local FIELDS
local prefix = ARGV[1]

local function data_key(hash) return prefix .. 't:' .. hash end
local function index_key(user) return prefix .. 'u:' .. user end

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
