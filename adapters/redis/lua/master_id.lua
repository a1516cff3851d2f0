--[[
master_id: which master serves the key (its replication id): a replica promoted in a
failover, or a server restarted, answers another one.

KEYS[1]  any key: on a Redis Cluster the call goes to the master that holds its slot
Returns  the master's replication id (INFO replication's master_replid)
]]
return string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)')
