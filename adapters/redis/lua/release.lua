--[[ release: give reserved stock back, for a batch of orders in one warehouse.

KEYS[1]  <base>meta        the warehouse's meta hash; its absence means Redis lost the warehouse
ARGV[1]  base              the warehouse's key base, e.g. "orderd:{main}:"
ARGV[2]  now_ms            the caller's clock (unused today; kept for the common call shape)
ARGV[3]  ops_ttl_s         how long an operation's result is kept to recognise a repeated call
ARGV[4]  batch             msgpack array of requests {order_id, op_id, lines}, where
                           lines = {{sku, quantity}, ...} releases those quantities (short pick),
                           and an empty lines array releases everything the order holds here
                           and takes it out of every backorder queue (cancel).
Returns  a flat array: the warehouse's epoch, then two items per request: replay, result.
         replay is 1 when result is the
         stored one of an earlier call with the same order and op_id; result is msgpack
         {code, released, dropped} with released = {{sku, quantity}, ...} given back to
         available stock and dropped = {{sku, quantity}, ...} taken out of the queues.
Codes    1 done; -2 bad quantity; -3 bad request; -4 more than the order holds;
         -7 a stock record that is not numbers. Nothing is written unless the code is 1.
Errors   "NOMETA ..." when KEYS[1] is missing; "BADBATCH ..." when ARGV cannot be read.
]]

local DONE, BAD_QUANTITY, BAD_REQUEST, NOT_HELD, CORRUPT = 1, -2, -3, -4, -7
local MAX_QUANTITY = 1000000000

-- The warehouse's epoch: it changes with every rebuild, so a ledger write can tell whether
-- the Redis state it records still exists.
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  return redis.error_reply('NOMETA warehouse not initialised: ' .. KEYS[1])
end
local base = ARGV[1]
local ttl = tonumber(ARGV[3])
local decoded, batch = pcall(cmsgpack.unpack, ARGV[4])
if KEYS[1] ~= base .. 'meta' or not ttl or not decoded or type(batch) ~= 'table' then
  return redis.error_reply('BADBATCH release expects base, now_ms, ops_ttl_s, msgpack batch')
end

local function release_one(request)
  if type(request) ~= 'table' then return 0, cmsgpack.pack({ BAD_REQUEST, {}, {} }) end
  local order, op, lines = request[1], request[2], request[3]
  if type(order) ~= 'string' or order == '' or type(op) ~= 'string' or op == ''
      or type(lines) ~= 'table' then
    return 0, cmsgpack.pack({ BAD_REQUEST, {}, {} })
  end
  local op_key = base .. 'op:' .. order .. ':' .. op
  local earlier = redis.call('GET', op_key)
  if earlier then return 1, earlier end

  local res = base .. 'res:' .. order
  local released, dropped = {}, {}
  if #lines == 0 then
    local held = redis.call('HGETALL', res)
    for i = 1, #held, 2 do
      released[#released + 1] = { held[i], tonumber(held[i + 1]) }
    end
    local waiting = redis.call('HGETALL', base .. 'bo:' .. order)
    for i = 1, #waiting, 2 do
      dropped[#dropped + 1] = { waiting[i], tonumber(waiting[i + 1]) }
    end
  else
    local wanted, skus = {}, {}
    for _, line in ipairs(lines) do
      local sku, quantity = line[1], line[2]
      if type(sku) ~= 'string' or type(quantity) ~= 'number' or quantity < 1
          or quantity > MAX_QUANTITY or quantity % 1 ~= 0 then
        return 0, cmsgpack.pack({ BAD_QUANTITY, {}, {} })
      end
      if not wanted[sku] then
        skus[#skus + 1] = sku
        wanted[sku] = 0
      end
      wanted[sku] = wanted[sku] + quantity
    end
    for _, sku in ipairs(skus) do
      local held = tonumber(redis.call('HGET', res, sku) or '0')
      if held < wanted[sku] then
        return 0, cmsgpack.pack({ NOT_HELD, { { sku, wanted[sku] } }, {} })
      end
      released[#released + 1] = { sku, wanted[sku] }
    end
  end

  -- Every stock record written below must hold numbers, or the script would stop half way.
  for _, group in ipairs({ released, dropped }) do
    for _, line in ipairs(group) do
      local s = redis.call('HMGET', base .. 'stock:' .. line[1], 'reserved', 'backordered')
      if not tonumber(s[1] or '0') or not tonumber(s[2] or '0') then
        return 0, cmsgpack.pack({ CORRUPT, { { line[1], line[2] } }, {} })
      end
    end
  end

  for _, line in ipairs(released) do
    redis.call('HINCRBY', base .. 'stock:' .. line[1], 'reserved', -line[2])
    if redis.call('HINCRBY', res, line[1], -line[2]) <= 0 then
      redis.call('HDEL', res, line[1])
    end
  end
  for _, line in ipairs(dropped) do
    redis.call('HINCRBY', base .. 'stock:' .. line[1], 'backordered', -line[2])
    redis.call('ZREM', base .. 'backorders:' .. line[1], order)
  end
  if #dropped > 0 then redis.call('DEL', base .. 'bo:' .. order) end

  local result = cmsgpack.pack({ DONE, released, dropped })
  redis.call('SET', op_key, result, 'EX', ttl)
  return 0, result
end

local out = { epoch }
for i, request in ipairs(batch) do
  out[2 * i], out[2 * i + 1] = release_one(request)
end
return out
