--[[ renew_leases: extend the leases of orders whose turns are still running, where the
turns still hold them.

KEYS     <prefix>lease:<order>, one per running turn
ARGV[1]  how long a lease lasts from now on, in milliseconds
ARGV[2]  the tokens the turns set when they took the leases, 16 characters each, one per
         key in the same order
Returns  one number per key: 1 when the lease is still the turn's and lasts ARGV[1] again,
         0 when it ran out or another turn holds it now (it is left as it is: the turn
         has lost its order and must not act for it outside).
]]

local kept = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == string.sub(ARGV[2], 16 * i - 15, 16 * i) then
    kept[i] = redis.call('PEXPIRE', key, ARGV[1])
  else
    kept[i] = 0
  end
end
return kept
