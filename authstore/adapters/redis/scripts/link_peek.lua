-- include: _prelude.lua, _tokens.lua, _links.lua
-- ARGV: prefix, token hash. The link while usable, else false.
if status(ARGV[2], clock()) ~= 'usable' then
  return false
end
return record(data_key(ARGV[2]))
