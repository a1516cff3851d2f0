--[[ stream_add: put stored messages on the order stream, in the order given.

KEYS[1]  <prefix>stream:orders
ARGV[1]  msgpack array of messages {order_id, seq, message JSON, mailbox id}, the numbers
         as decimal strings
Returns  the new entries' ids, one per message, in the same order.

One call for a whole batch: a pipeline of XADDs costs the client more per message than
the server spends adding it.
]]

local ids = {}
for i, m in ipairs(cmsgpack.unpack(ARGV[1])) do
  ids[i] = redis.call('XADD', KEYS[1], '*', 'order', m[1], 'seq', m[2], 'msg', m[3], 'mid', m[4])
end
return ids
