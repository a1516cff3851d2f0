--[[ release_leases: give up the leases of orders whose turns ended, but only those the
turns took.

KEYS     <prefix>lease:<order>, one per turn
ARGV[1]  the tokens the turns set when they took the leases, 16 characters each, one per
         key in the same order
Returns  how many leases were ours and are gone. A lease that had expired, and that
         someone else (or no one) holds now, is left as it is.
]]

local freed = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == string.sub(ARGV[1], 16 * i - 15, 16 * i) then
    freed = freed + redis.call('DEL', key)
  end
end
return freed
