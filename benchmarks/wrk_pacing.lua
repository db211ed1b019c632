-- Pacing for low-load runs (appended to wrk_report.lua by benchmarks/wrk.py): each connection
-- pauses `args[1]` ms after every answer, so every peer sees about the same modest request rate
-- instead of as many requests as it can take. Debian ships wrk, not wrk2, hence this approximation.
local pause_ms = 0
init = function(args) pause_ms = tonumber(args[1]) end
delay = function() return pause_ms end
