--[[ release_lease: give up an order's lease, but only the one this turn took.

KEYS[1]  <prefix>lease:<order>
ARGV[1]  the token the turn set when it took the lease
Returns  1 when the lease was ours and is gone; 0 when it had expired and someone else (or
         no one) holds it now, which is left as it is.
]]

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
