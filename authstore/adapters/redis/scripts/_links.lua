-- Magic links of one namespace live under one hash tag, ARGV[1] = '{<namespace>:links}:':
--   <tag>t:<token hash>  hash: the link (fields below), expires physically at its end;
--                        a consumed link keeps its record (consumed set) until then
--   <tag>u:<user id>     set: the user's token hashes (revoke_previous, revoke_user)
-- Scripts that read an index drop the members whose link is gone; an index expires
-- with the last link it lists.
local FIELDS = {'id', 'user', 'email', 'created', 'expires', 'app', 'ip', 'agent', 'consumed'}
local prefix = ARGV[1]

local function data_key(hash) return prefix .. 't:' .. hash end
local function index_key(user) return prefix .. 'u:' .. user end

local function record(key)
  return redis.call('HMGET', key, unpack(FIELDS))
end

-- 'usable' (live, unused), 'used' (consumed, still kept) or nil (gone or over).
local function status(hash, now)
  local row = redis.call('HMGET', data_key(hash), 'expires', 'consumed')
  if not row[1] or tonumber(row[1]) <= now then
    return nil
  end
  if row[2] then
    return 'used'
  end
  return 'usable'
end

-- Delete the user's unused links (all of them, or only the live ones); prune the rest.
local function revoke_unused(user, now, live_only)
  local index = index_key(user)
  local revoked = 0
  for _, hash in ipairs(redis.call('SMEMBERS', index)) do
    local state = status(hash, now)
    if state == 'usable' then
      revoked = revoked + 1
    end
    if state ~= 'used' then
      if state == 'usable' or not live_only then
        redis.call('DEL', data_key(hash))
      end
      redis.call('SREM', index, hash)
    end
  end
  return revoked
end
