-- wrk script: usage batches of $BENCH_BATCH records spread over every user, all new.
-- Reads "key_hash user_id lease_id" lines from $BENCH_USERS.
-- Request ids have the filter's shape (filter/src/ids.rs): 12 hex digits of time, then
-- 20 random ones. The time part is the run's start in milliseconds plus the batch
-- number, so ids grow as the filter's do; the random part is drawn per record slot.
local users = {}
local counter = 0
local bad = 0
local threads = {}
local start_ms = 0
local per_batch = tonumber(os.getenv("BENCH_BATCH") or "2000")

function setup(thread)
    table.insert(threads, thread)
    thread:set("id", #threads)
end

-- The bodies are built once per thread (one per rotation over the users), with "@@"
-- where each batch puts its number: the client is not what is measured, and building
-- hundreds of records per request in Lua took a good share of the two cores.
local templates = {}

local function random_hex(digits)
    local out = {}
    for i = 1, digits do out[i] = string.format("%x", math.random(0, 15)) end
    return table.concat(out)
end

function init(args)
    math.randomseed(os.time() * 1000 + id)
    start_ms = os.time() * 1000
    for line in io.lines(os.getenv("BENCH_USERS")) do
        local hash, uid, lease = line:match("^(%x+) (%d+) (%S+)")
        if hash then table.insert(users, {uid, lease}) end
    end
    local rotations = math.max(1, math.ceil(#users / per_batch))
    for t = 0, rotations - 1 do
        local parts = {}
        for i = 1, per_batch do
            local u = users[((t * per_batch + i) % #users) + 1]
            parts[i] = '{"request_id":"@@' .. random_hex(20) ..
                '","lease_id":"' .. u[2] .. '","user_id":' .. u[1] ..
                ',"provider":"openai","model":"gpt-4o-mini-2024-07-18","input_tokens":120,' ..
                '"output_tokens":30,"total_tokens":150,"cached_tokens":0,"reasoning_tokens":0,' ..
                '"status":200,"estimated":false,"priority":"normal","project_id":null,' ..
                '"privacy":"standard","ts_ms":1764466000000}'
        end
        templates[t + 1] = '{"proxy_id":"bench-proxy-' .. id .. '","records":[' ..
            table.concat(parts, ",") .. ']}'
    end
end

function request()
    counter = counter + 1
    local body = (templates[(counter % #templates) + 1]:gsub("@@", string.format("%012x", start_ms + counter)))
    return wrk.format("POST", "/internal/v1/usage", {
        ["authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN"),
        ["content-type"] = "application/json",
    }, body)
end

function response(status, headers, body)
    if status ~= 200 or not body:find('"applied":' .. per_batch, 1, true) then
        bad = bad + 1
    end
end

function done(summary, latency, requests)
    local not_ok = 0
    for _, t in ipairs(threads) do not_ok = not_ok + (t:get("bad") or 0) end
    io.write(string.format(
        'BENCH {"requests":%d,"duration_us":%d,"not_ok":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d}\n',
        summary.requests, summary.duration, not_ok,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        latency:percentile(50), latency:percentile(99)))
end
