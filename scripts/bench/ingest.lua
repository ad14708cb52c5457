-- wrk script for ingest: POSTs store_order_was_created events (two line items, about
-- 600 bytes) with a new customer and order id in each request, and counts every answer
-- that is not 202 so that a run of 429s or 503s cannot pass for throughput.
--
--   wrk -t2 -c64 -d20s --latency -s scripts/bench/ingest.lua http://127.0.0.1:18080/v1/events
--
-- Environment: BENCH_ORG (org_bench) and BENCH_HOST (shop.bench.example) must name an
-- organization that ingest knows with that host among its websites.
-- done() prints one line for scripts, "bench-wrk: key=value ...", with exact numbers
-- (latencies in microseconds), besides wrk's own report.
--
-- The body matches ORDER_TEMPLATE in ingest/examples/producer_rate.rs; keep the two alike
-- so that the producer ceiling is measured on the same records.

local org = os.getenv("BENCH_ORG") or "org_bench"
local host = os.getenv("BENCH_HOST") or "shop.bench.example"

-- Runs in the main Lua state once per thread, before the threads start: numbering the
-- threads keeps their ids apart, as each thread has its own state and counter, and the
-- start time (hex seconds) keeps a run's ids apart from an earlier run's, such as the
-- warm-up's on the same topics.
local threads = {}
local run = string.format("%x", os.time())
function setup(thread)
  table.insert(threads, thread)
  thread:set("id_prefix", run .. "-" .. #threads .. "-")
end

local headers = { ["Content-Type"] = "application/json" }
local head = '{"organization_id":"' .. org .. '","customer_id":"c-'
local page = '","page":{"url":"https://' .. host .. '/checkout/thanks","title":"Thank you for your order"},'
  .. '"name":"store_order_was_created","data":{"order":{"id":"'
local tail = '","currency":"USD","total_price":220.96,"subtotal_price":199.97,"shipping_price":4.99,'
  .. '"tax_price":16.00,"line_items":['
  .. '{"product_id":"8112233445","title":"Merino Wool Crew Neck","quantity":1,"price":149.99,'
  .. '"sku":"MW-CREW-M-NAVY","variant_title":"M / Navy"},'
  .. '{"product_id":"8112233999","title":"Organic Cotton Socks, 3 pack","quantity":2,"price":24.99,'
  .. '"sku":"OC-SOCK-3P"}]}}}'

function init(args)
  sent = 0
  non202 = 0
  by_status = {}
end

function request()
  sent = sent + 1
  local id = id_prefix .. sent
  local body = head .. id .. page .. id .. '","order_number":"#' .. id .. tail
  return wrk.format("POST", nil, headers, body)
end

-- Defining response() makes wrk parse every answer in Lua, which costs throughput; it
-- only counts, and leaves headers and body alone.
function response(status, headers, body)
  if status ~= 202 then
    non202 = non202 + 1
    by_status[status] = (by_status[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local total, statuses = 0, {}
  for _, thread in ipairs(threads) do
    total = total + thread:get("non202")
    for status, count in pairs(thread:get("by_status")) do
      statuses[status] = (statuses[status] or 0) + count
    end
  end
  local listed = {}
  for status, count in pairs(statuses) do
    table.insert(listed, status .. "x" .. count)
  end
  table.sort(listed)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  print(string.format(
    "non-202 answers: %d%s", total, #listed > 0 and " (status x count: " .. table.concat(listed, ", ") .. ")" or ""))
  print(string.format(
    "bench-wrk: requests=%d non202=%d seconds=%.3f accepted_per_s=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d "
      .. "connect_errors=%d read_errors=%d write_errors=%d timeouts=%d statuses=%s",
    summary.requests, total, seconds, (summary.requests - total) / seconds,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout, #listed > 0 and table.concat(listed, ",") or "none"))
end
