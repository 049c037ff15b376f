-- include: _prelude.lua, _tokens.lua, _links.lua
-- ARGV: prefix, token hash. The link while usable, else false ({bucket}: it lives there).
local state = status(ARGV[2], clock())
if state ~= 'usable' then
  return not state and redirect(pointer_key(ARGV[2])) or false
end
return record(data_key(ARGV[2]))
