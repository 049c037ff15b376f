-- include: _prelude.lua, _tokens.lua, _sessions.lua
-- ARGV: prefix, user, 'count' or 'list'. The live sessions newest first, or their number.
local hashes = live_hashes(ARGV[2], clock())
if ARGV[3] == 'count' then
  return #hashes
end
local rows = {}
for position, hash in ipairs(hashes) do
  rows[position] = record(data_key(hash))
end
return rows
