-- Picks each request from a pre-generated list: args = callers file, sequence file, start, threads.
-- callers: one "jwt<TAB>json body" per line; sequence: one 1-based caller index per line.
-- Thread t of n takes positions start+t, start+t+n, ... so no two threads send the same line.
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local callers, seq = {}, {}
local pos, step, n

function init(args)
  for line in io.lines(args[1]) do
    local token, body = line:match("^(%S+)\t(.*)$")
    callers[#callers + 1] = { "Bearer " .. token, body }
  end
  for line in io.lines(args[2]) do
    seq[#seq + 1] = tonumber(line)
  end
  n = #seq
  step = tonumber(args[4])
  pos = (tonumber(args[3]) + tid) % n + 1
end

function request()
  local c = callers[seq[pos]]
  pos = pos + step
  if pos > n then
    pos = pos - n
  end
  return wrk.format("POST", nil, { ["Authorization"] = c[1], ["Content-Type"] = "application/json" }, c[2])
end
