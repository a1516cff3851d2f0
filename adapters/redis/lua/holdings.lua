-- holdings: what an order holds in a warehouse, as every allocation script reads and writes
-- it: one field of <base>orders per order, JSON {"r": {sku: reserved}, "w": {sku: waiting}},
-- each part left out when empty. scripts.py puts this before each allocation script.

-- The holding a field's value (``raw``; false or nil when the order holds nothing here)
-- stands for, as {r = {...}, w = {...}}; nil when it cannot be read, which a script
-- answers as corrupt before it writes anything.
local function decode_holding(raw)
  if not raw then return { r = {}, w = {} } end
  local readable, h = pcall(cjson.decode, raw)
  if not readable or type(h) ~= 'table' then return nil end
  h.r, h.w = h.r or {}, h.w or {}
  for _, part in ipairs({ h.r, h.w }) do
    if type(part) ~= 'table' then return nil end
    for sku, units in pairs(part) do
      if type(sku) ~= 'string' or type(units) ~= 'number' then return nil end
    end
  end
  return h
end

-- The field's value for holding ``h``; nil when it holds nothing (the field goes).
local function encode_holding(h)
  local parts = {}
  if next(h.r) ~= nil then parts.r = h.r end
  if next(h.w) ~= nil then parts.w = h.w end
  if next(parts) == nil then return nil end
  return cjson.encode(parts)
end

-- Write holding ``h`` as the order's field of ``orders_key``, or remove the field when it
-- holds nothing.
local function keep_holding(orders_key, order, h)
  local value = encode_holding(h)
  if value then
    redis.call('HSET', orders_key, order, value)
  else
    redis.call('HDEL', orders_key, order)
  end
end


-- The warehouse's epoch (it changes with every rebuild, so a ledger write can tell whether
-- the Redis state it records still exists); nil when Redis has lost the warehouse: no meta,
-- or meta written under another master than the one running this script. A replica
-- promoted since (a failover) may lack the old master's last writes, which replication
-- had not carried yet: the caller rebuilds the warehouse from the ledger, then runs again.
local function current_epoch(meta)
  local found = redis.call('HMGET', meta, 'epoch', 'master')
  local epoch, master = found[1], found[2]
  if not epoch then return nil end
  local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)')
  if master ~= replid then return nil end
  return epoch
end
