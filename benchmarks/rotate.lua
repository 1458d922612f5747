-- wrk script: send pre-built requests in rotation and print wrk's own latency distribution.
--
--   wrk -t1 -c8 -d10s -s benchmarks/rotate.lua http://127.0.0.1:PORT -- LIST_FILE
--
-- LIST_FILE: first line "token<TAB>TOKEN" (sent as X-Api-Token; "-" for none), then one line
-- per request "PATH<TAB>CONTENT-TYPE<TAB>BODY-FILE". Every request is formatted once, in
-- init(); request() only hands out the next string, so the generator costs little CPU.
-- done() prints one "BENCH_WRK key=value ..." line that benchmarks/loadgen.py parses;
-- latencies are wrk's own histogram (microseconds), not measured in Lua.

local prepared = {}
local next_index = 0

local function split_tabs(line)
   local fields = {}
   for field in string.gmatch(line, "[^\t]+") do
      fields[#fields + 1] = field
   end
   return fields
end

function init(args)
   local token = nil
   for line in io.lines(args[1]) do
      local fields = split_tabs(line)
      if fields[1] == "token" then
         if fields[2] ~= "-" then
            token = fields[2]
         end
      elseif #fields == 3 then
         local file = assert(io.open(fields[3], "rb"))
         local body = file:read("*a")
         file:close()
         local headers = { ["Content-Type"] = fields[2], ["Host"] = wrk.host }
         if token then
            headers["X-Api-Token"] = token
         end
         prepared[#prepared + 1] = wrk.format("POST", fields[1], headers, body)
      end
   end
   assert(#prepared > 0, "no requests in " .. args[1])
   -- Threads start at different places of the rotation.
   next_index = math.random(#prepared) - 1
end

function request()
   next_index = next_index % #prepared + 1
   return prepared[next_index]
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH_WRK requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d"
         .. " timeout=%d p50_us=%d p95_us=%d p99_us=%d mean_us=%.1f max_us=%d\n",
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
      e.timeout, latency:percentile(50), latency:percentile(95), latency:percentile(99),
      latency.mean, latency.max))
end
