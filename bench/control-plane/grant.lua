-- wrk script: lease grants for many distinct users from 8 proxies.
-- Reads "key_hash user_id lease_id" lines from $BENCH_USERS.
local hashes = {}
local counter = 0
local bad = 0
local threads = {}

function setup(thread)
    table.insert(threads, thread)
    thread:set("id", #threads)
end

function init(args)
    for line in io.lines(os.getenv("BENCH_USERS")) do
        local hash = line:match("^(%x+)")
        if hash then table.insert(hashes, hash) end
    end
    -- Threads start at different users.
    counter = (id or 1) * 7919
end

function request()
    counter = counter + 1
    local hash = hashes[(counter % #hashes) + 1]
    local proxy = "bench-proxy-" .. (math.floor(counter / #hashes) % 8)
    local body = '{"key_hash":"' .. hash .. '","proxy_id":"' .. proxy ..
        '","requested_tokens":100,"priority":"normal"}'
    return wrk.format("POST", "/internal/v1/leases", {
        ["authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN"),
        ["content-type"] = "application/json",
    }, body)
end

function response(status, headers, body)
    if status ~= 200 or not body:find('"decision":"granted"', 1, true) then
        bad = bad + 1
    end
end

function done(summary, latency, requests)
    local not_granted = 0
    for _, t in ipairs(threads) do not_granted = not_granted + (t:get("bad") or 0) end
    io.write(string.format(
        'BENCH {"requests":%d,"duration_us":%d,"not_ok":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d}\n',
        summary.requests, summary.duration, not_granted,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        latency:percentile(50), latency:percentile(99)))
end
