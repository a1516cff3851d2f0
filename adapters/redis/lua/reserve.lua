--[[ reserve: reserve stock for a batch of orders in one warehouse.

KEYS[1]  <base>meta        the warehouse's meta hash; its absence means Redis lost the warehouse
ARGV[1]  base              the warehouse's key base, e.g. "orderd:{main}:" (KEYS[1] without "meta")
ARGV[2]  now_ms            the caller's clock; the script never reads one
ARGV[3]  window_ms         results are kept in one hash per window of this length,
                           <base>done:<now_ms // window_ms>; this window's and the last one's
                           are looked up to recognise a repeated call
ARGV[4]  skus              msgpack array of sku names: the batch's sku table
ARGV[5]  ids               msgpack array: order_id, op_id of each request, in turn
ARGV[6]  ints              msgpack array of integers, per request: mode, priority, n, then n
                           pairs (index into skus from 1, quantity), the skus distinct.
                           mode: 1 "all"            all lines or nothing; nothing is queued
                                 2 "partial"        what is free now; nothing is queued
                                 3 "wait_all"       all lines, else queue the whole order
                                 4 "ship_available" what is free now, queue the rest
                                 5 "queue"          queue the whole order, reserve nothing now
                                                    (units a short pick did not find here
                                                    wait for a recount or a receipt)
                           priority 0..9 (9 first in the backorder queues)
                           op_id names the reservation ("reserve" for the order's first one; a
                           re-route after a short pick gets its own): one result per order and op_id.
Returns  a flat array: the warehouse's epoch, then per request, as its first value says:
         0, code: the lines are implied by the code (1: each got what it wanted; 3: each
                  waits for it; 4: nothing happened), then for code 2 reserved and
                  backordered per line, and for a negative code the line at fault (its
                  number from 1; 0 when none is);
         1, result: the stored result of an earlier call with the same order and op_id
                  (msgpack {code, "n", (sku, wanted) per line, then for code 2 (reserved,
                  backordered) per line}).
Codes    1 reserved in full; 2 partly reserved (the rest queued, or not, per mode);
         3 queued, nothing reserved; 4 short: nothing written (modes "all" and "partial");
         -1 unknown sku; -2 bad quantity; -3 bad request;
         -7 a stock record that is not numbers (repair with recover).
         Nothing is written for a request unless its code is 1, 2 or 3.
Errors   "NOMETA ..." when KEYS[1] is missing, or written under another master; "BADBATCH ..." when ARGV cannot be read.
Stock    <base>on_hand, <base>reserved, <base>backordered: HASH sku -> units; a sku with no
         on_hand field is unknown here.
Writes   the skus' reserved and backordered, once per sku; <base>orders, one field per
         order that took or queued something (JSON {"r": {sku: reserved}, "w": {sku: waiting}});
         <base>backorders:<sku> for what is queued; the result in this window's done hash.
How      Requests are decided in order against stock read once per sku and kept in a table;
         every write happens at the end, so a script error anywhere leaves nothing written,
         and a sku many orders want costs one read and one write per call, not per order.
Invariant per sku: 0 <= reserved <= on_hand; backordered = sum of the queued quantities.
]]

local RESERVED, PARTIAL, QUEUED, SHORT = 1, 2, 3, 4
local UNKNOWN_SKU, BAD_QUANTITY, BAD_REQUEST, CORRUPT = -1, -2, -3, -7
local MAX_QUANTITY = 1000000000
local PRIORITY_STEP = 10000000000000
local SLICE = 500  -- values per variadic call: unpack() has a limit

-- The warehouse's epoch, or nil when Redis lost the warehouse (holdings.lua).
local epoch = current_epoch(KEYS[1])
if not epoch then
  return redis.error_reply('NOMETA warehouse not initialised: ' .. KEYS[1])
end
local base = ARGV[1]
local now, window = tonumber(ARGV[2]), tonumber(ARGV[3])
local ok_skus, skus = pcall(cmsgpack.unpack, ARGV[4])
local ok_ids, ids = pcall(cmsgpack.unpack, ARGV[5])
local ok_ints, ints = pcall(cmsgpack.unpack, ARGV[6])
if KEYS[1] ~= base .. 'meta' or not now or not window or window < 1 or not ok_skus
    or not ok_ids or not ok_ints or type(skus) ~= 'table' or type(ids) ~= 'table'
    or type(ints) ~= 'table' or #ids % 2 ~= 0 then
  return redis.error_reply('BADBATCH reserve expects base, now_ms, window_ms, skus, ids, ints')
end
local count = #ids / 2
local done_key = base .. 'done:' .. math.floor(now / window)
local last_key = base .. 'done:' .. (math.floor(now / window) - 1)
-- A window's hash is looked up until the next window ends; kept a minute past that (in
-- the caller's time, which a test or demo clock may set apart from Redis's).
local done_until = (math.floor(now / window) + 2) * window + 60000

local function call_sliced(command, key, values, step)
  for first = 1, #values, step do
    redis.call(command, key, unpack(values, first, math.min(first + step - 1, #values)))
  end
end

-- Earlier results of every request, in two rounds.
local fields = {}
for i = 1, count do
  fields[i] = tostring(ids[2 * i - 1]) .. ' ' .. tostring(ids[2 * i])
end
local earlier = {}
for _, key in ipairs({ done_key, last_key }) do
  for first = 1, count, SLICE do
    local last = math.min(first + SLICE - 1, count)
    local found = redis.call('HMGET', key, unpack(fields, first, last))
    for j = 1, last - first + 1 do
      if found[j] and not earlier[first + j - 1] then earlier[first + j - 1] = found[j] end
    end
  end
end

-- sku index -> {on_hand, reserved, backordered, reserved_delta, backordered_delta}, or false
-- for an unknown sku, or 'corrupt': every sku of the batch read at once, three fields each.
local stock = {}
do
  local columns = {}
  for c, name in ipairs({ 'on_hand', 'reserved', 'backordered' }) do
    local column = {}
    for first = 1, #skus, SLICE do
      local last = math.min(first + SLICE - 1, #skus)
      local found = redis.call('HMGET', base .. name, unpack(skus, first, last))
      for j = 1, last - first + 1 do column[first + j - 1] = found[j] end
    end
    columns[c] = column
  end
  for index = 1, #skus do
    local sku = skus[index]
    if type(sku) ~= 'string' or sku == '' or not columns[1][index] then
      stock[index] = false
    else
      local on_hand = tonumber(columns[1][index])
      local reserved = tonumber(columns[2][index] or '0')
      local waiting = tonumber(columns[3][index] or '0')
      if on_hand and reserved and waiting then
        stock[index] = { on_hand, reserved, waiting, 0, 0 }
      else
        stock[index] = 'corrupt'
      end
    end
  end
end

-- Appended to with a count of its own: the length operator searches the table each time.
local out, n_out = { epoch }, 1
local function put(value)
  n_out = n_out + 1
  out[n_out] = value
end

local function refuse(code, at_fault)
  put(0)
  put(code)
  put(at_fault or 0)
end

-- A stored result names its lines, so that a repeat gets the first result whatever lines
-- it asks for: {code, 'n', (sku, wanted) per line}, then for code 2 (reserved, backordered)
-- per line. A rebuild from the ledger writes the same form.
local function replay(stored)
  put(1)
  put(stored)
end

-- What each request's order already holds here, read and checked before anything is
-- decided: false when it cannot be read (the request is refused as corrupt, nothing else
-- is), nil when the order holds nothing.
local orders_key = base .. 'orders'
local held = {}
do
  local names = {}
  for i = 1, count do names[i] = tostring(ids[2 * i - 1]) end
  for first = 1, count, SLICE do
    local last = math.min(first + SLICE - 1, count)
    local found = redis.call('HMGET', orders_key, unpack(names, first, last))
    for j = 1, last - first + 1 do
      if found[j] then held[first + j - 1] = decode_holding(found[j]) or false end
    end
  end
end

-- What the orders that wrote took and queued, line by line in flat arrays (no table per
-- order or line): for the j-th such order, w_request[j] is its request, its lines are
-- w_first[j] .. w_first[j + 1] - 1 of l_index, l_take, l_queue.
local w_request, w_first, w_packed, w_score = {}, {}, {}, {}
local l_index, l_take, l_queue = {}, {}, {}
local n_writes, n_lines = 0, 0
local seen_here = {}  -- the same order and op twice in one batch is a repeat too
local seen_line = {}  -- sku index -> the request that last named it: a sku twice is refused
local pos = 1
for i = 1, count do
  local mode, priority, n = ints[pos], ints[pos + 1], ints[pos + 2]
  local lines_at = pos + 3
  if type(n) ~= 'number' or n < 0 or n % 1 ~= 0 or lines_at + 2 * n - 1 > #ints then
    return redis.error_reply('BADBATCH reserve: request ' .. i .. ' runs past the integers')
  end
  pos = lines_at + 2 * n
  local order, op = ids[2 * i - 1], ids[2 * i]
  local stored = earlier[i] or seen_here[fields[i]]
  if type(order) ~= 'string' or order == '' or type(op) ~= 'string' or op == '' or n == 0
      or type(mode) ~= 'number' or mode < 1 or mode > 5 or type(priority) ~= 'number'
      or priority < 0 or priority > 9 or priority % 1 ~= 0 then
    refuse(BAD_REQUEST)
  elseif stored then
    replay(stored)
  elseif held[i] == false then
    refuse(CORRUPT)
  else
    local code, at_fault, whole = nil, nil, true
    for k = 0, n - 1 do
      local index, quantity = ints[lines_at + 2 * k], ints[lines_at + 2 * k + 1]
      if type(quantity) ~= 'number' or quantity < 1 or quantity > MAX_QUANTITY
          or quantity % 1 ~= 0 or type(index) ~= 'number' or seen_line[index] == i then
        code = code or BAD_QUANTITY
      else
        seen_line[index] = i
        local s = stock[index]
        if not s then
          code, at_fault = code or UNKNOWN_SKU, at_fault or k + 1
        elseif s == 'corrupt' then
          code, at_fault = code or CORRUPT, at_fault or k + 1
        elseif s[1] - s[2] < quantity then
          whole = false
        end
      end
    end
    if mode == 5 then
      whole = false
    end
    if code then
      refuse(code, at_fault)
    else
      local first, taken_any, queued_any = n_lines + 1, false, false
      for k = 0, n - 1 do
        local index, quantity = ints[lines_at + 2 * k], ints[lines_at + 2 * k + 1]
        local take = 0
        if whole then
          take = quantity
        elseif mode == 2 or mode == 4 then
          local s = stock[index]
          take = math.max(0, math.min(quantity, s[1] - s[2]))
        end
        local queue = (mode >= 3) and (quantity - take) or 0
        taken_any = taken_any or take > 0
        queued_any = queued_any or queue > 0
        n_lines = n_lines + 1
        l_index[n_lines], l_take[n_lines], l_queue[n_lines] = index, take, queue
      end
      if not taken_any and not queued_any then
        n_lines = first - 1  -- nothing written: nothing to remember
        put(0)
        put(SHORT)
      else
        local code = whole and RESERVED or (taken_any and PARTIAL or QUEUED)
        local result = { code, 'n' }
        for k = 0, n - 1 do
          result[3 + 2 * k] = skus[ints[lines_at + 2 * k]]
          result[4 + 2 * k] = ints[lines_at + 2 * k + 1]
        end
        put(0)
        put(code)
        local r = 2 + 2 * n
        for at = first, n_lines do
          local s = stock[l_index[at]]
          local take, queue = l_take[at], l_queue[at]
          s[2], s[4] = s[2] + take, s[4] + take
          s[3], s[5] = s[3] + queue, s[5] + queue
          -- Only a partial result says what each line got: the others say it by their code.
          if code == PARTIAL then
            put(take)
            put(queue)
            result[r + 1], result[r + 2] = take, queue
            r = r + 2
          end
        end
        local packed = cmsgpack.pack(result)
        seen_here[fields[i]] = packed
        n_writes = n_writes + 1
        w_request[n_writes], w_first[n_writes], w_packed[n_writes] = i, first, packed
        w_score[n_writes] = (9 - priority) * PRIORITY_STEP + now
      end
    end
  end
end
w_first[n_writes + 1] = n_lines + 1

-- Every write, now that every request is decided: each sku's new figures in one call per
-- field (the script runs alone, so what it read is still what is there).
do
  local reserved, waiting = {}, {}
  for index, s in pairs(stock) do
    if type(s) == 'table' then
      if s[4] ~= 0 then
        reserved[#reserved + 1] = skus[index]
        reserved[#reserved + 1] = s[2]
      end
      if s[5] ~= 0 then
        waiting[#waiting + 1] = skus[index]
        waiting[#waiting + 1] = s[3]
      end
    end
  end
  call_sliced('HSET', base .. 'reserved', reserved, 2 * SLICE)
  call_sliced('HSET', base .. 'backordered', waiting, 2 * SLICE)
end
if n_writes > 0 then
  local holding, touched, n_touched = {}, {}, 0
  local results, queues, queued = {}, {}, {}
  for j = 1, n_writes do
    local order = ids[2 * w_request[j] - 1]
    -- An order's holding here: what it already held (an earlier reservation), plus this one.
    local h = holding[order]
    if not h then
      h = held[w_request[j]] or { r = {}, w = {} }
      holding[order] = h
      n_touched = n_touched + 1
      touched[n_touched] = order
    end
    for at = w_first[j], w_first[j + 1] - 1 do
      local sku, take, queue = skus[l_index[at]], l_take[at], l_queue[at]
      if take > 0 then h.r[sku] = (h.r[sku] or 0) + take end
      if queue > 0 then
        h.w[sku] = (h.w[sku] or 0) + queue
        local members = queues[sku]
        if not members then
          members = {}
          queues[sku] = members
          queued[sku] = 0
        end
        local m = queued[sku]
        members[m + 1], members[m + 2] = w_score[j], order
        queued[sku] = m + 2
      end
    end
    results[2 * j - 1], results[2 * j] = fields[w_request[j]], w_packed[j]
  end
  local holdings = {}
  for t = 1, n_touched do
    holdings[2 * t - 1], holdings[2 * t] = touched[t], encode_holding(holding[touched[t]]) or '{}'
  end
  call_sliced('HSET', orders_key, holdings, 2 * SLICE)
  call_sliced('HSET', done_key, results, 2 * SLICE)
  redis.call('PEXPIRE', done_key, done_until - now)
  for sku, members in pairs(queues) do
    -- NX: an order queued again for the same sku keeps its place.
    local key = base .. 'backorders:' .. sku
    for first = 1, #members, 2 * SLICE do
      redis.call('ZADD', key, 'NX', unpack(members, first, math.min(first + 2 * SLICE - 1, #members)))
    end
  end
end
return out
