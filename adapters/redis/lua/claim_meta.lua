--[[
claim_meta: a rebuilt warehouse's meta, written only under the master the rebuild began
under. A failover in between may have promoted a replica that lacks part of what the rebuild
wrote: its meta is left missing, and the warehouse is rebuilt again under the new master.

KEYS[1]  <base>meta
ARGV[1]  the master's replication id when the rebuild began (master_id.lua)
ARGV[2..] field, value pairs of meta
Returns  1; error "NOMETA ..." when another master serves the key now
]]
local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)')
if replid ~= ARGV[1] then
  return redis.error_reply('NOMETA another master since the rebuild began: ' .. KEYS[1])
end
redis.call('HSET', KEYS[1], 'master', ARGV[1], unpack(ARGV, 2))
return 1
