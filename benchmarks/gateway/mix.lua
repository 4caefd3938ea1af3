-- wrk script for the candidate request mix (bench_gateway.py's mix phase): every connection walks
-- interviews end to end as a candidate's page (and benchmarks/load/locustfile.py's CandidateUser)
-- does: accept an invite (start interview, which returns the first question), answer it, answer
-- the next question the answer's response brings, ... until the interview is finished, finish it,
-- then take the next invite. As in the locust user, one answer in ten is preceded by a reload
-- (read the session, then the current question) and one in twenty is sent a second time with
-- the same idempotency key, as after a lost response.
--
--   wrk -t32 -c32 -d300s -s mix.lua http://127.0.0.1:PORT -- INVITES ANSWERS THREADS [RELOAD_P RESEND_P]
--
-- INVITES: invite tokens, one a line; thread k (0-based) takes lines k+1, k+1+THREADS, ...
-- ANSWERS: "kind<TAB>answer as a JSON string" lines from benchmarks/load/answers.py.
-- RELOAD_P, RESEND_P: the reload and resend probabilities, 0.1 and 0.05 when left out; a run of a
-- few seconds (tests/e2e/test_mix_smoke.py) raises them so that both paths surely run.
--
-- Run it with as many threads as connections (-t N -c N): a thread's connections share its Lua
-- state and wrk does not call request() for a connection right after that connection's
-- response(), so the interview state below is only sound with one connection per thread.

local MARKER = "XLI-RESULT "  -- bench_gateway.py reads the line done() prints after its MARKER
-- An interview that fails this many requests in a row is left for the next invite, so one
-- broken session cannot hold a connection for the whole run.
local MAX_ERRORS_IN_A_ROW = 3
-- The locust user's defaults (--reload-probability, --retry-probability).
local RELOAD_P, RESEND_P = 0.1, 0.05
local KINDS = {
  QUESTION_KIND_FORMULA = "formula",
  QUESTION_KIND_FREE_TEXT = "free_text",
  QUESTION_KIND_MULTIPLE_CHOICE = "multiple_choice",
  QUESTION_KIND_NUMERIC = "numeric",
}
local START, SESSION, QUESTION, FINISH = "start interview", "get session (reload)", "get question", "finish interview"
local RESEND = "submit answer [same key again]"
local TYPES = {START, SESSION, QUESTION, "submit answer [formula]", "submit answer [free_text]",
  "submit answer [multiple_choice]", "submit answer [numeric]", RESEND, FINISH}

-- Setup and done run in wrk's main Lua state: it numbers the threads and keeps them for done().
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

-- What follows runs in each thread's own Lua state. Globals, so done() can read them.
counts, non_2xx = {}, {}
failures = {}  -- non-2xx responses by status and problem type, e.g. "503 scoring-delayed"
stats = {interviews = 0, abandoned = 0, lost = 0, out_of_invites = 0}

local invites, next_invite = {}, 1
local answers = {}
local action = START  -- what the next request does
local pending = nil   -- the request type in flight, until its response arrives
local session, auth, question = nil, nil, nil
local sent_answer = nil  -- the last answer request, for a resend under the same key
local resend_body = nil  -- the reply to the answer being resent
local errors_in_a_row = 0
local numbered = 0
local made, last = 0, nil  -- requests generated, and the latest

local function read_lines(path, keep)
  local lines, index = {}, 0
  for line in io.lines(path) do
    index = index + 1
    if line ~= "" and keep(index) then table.insert(lines, line) end
  end
  return lines
end

function init(args)
  local stride = tonumber(args[3])
  invites = read_lines(args[1], function(index) return (index - 1) % stride == id end)
  for _, line in ipairs(read_lines(args[2], function() return true end)) do
    local kind, literal = line:match("^(%S+)\t(.*)$")
    answers[kind] = answers[kind] or {}
    table.insert(answers[kind], literal)
  end
  RELOAD_P, RESEND_P = tonumber(args[4]) or RELOAD_P, tonumber(args[5]) or RESEND_P
  math.randomseed(os.time() * 1000 + id)
  for _, name in ipairs(TYPES) do counts[name], non_2xx[name] = 0, 0 end
end

-- How many strings the JSON array opening at ``start`` (its "[") holds.
local function array_length(body, start)
  local n, at = 0, start + 1
  while true do
    at = body:find("[^%s]", at)
    local c = at and body:sub(at, at)
    if c ~= '"' then return n end
    -- Past the string: skip escapes, so an escaped quote does not end it.
    at = at + 1
    while true do
      local stop = body:find('[\\"]', at)
      if stop == nil then return n end
      if body:sub(stop, stop) == "\\" then at = stop + 2 else at = stop + 1; break end
    end
    n = n + 1
    at = body:find("[^%s]", at)
    if at == nil or body:sub(at, at) ~= "," then return n end
    at = at + 1
  end
end

-- The fields the answer needs of the question object that opens at ``at`` (the whole body when
-- nil); nil when there is none. Keys are matched with their quotes and colon: inside JSON
-- strings quotes are escaped, so text of the prompt or the sheet cannot match them.
local function parse_question(body, at)
  if at == nil then return nil end
  local item = body:match('"item_id":"([^"]+)"', at)
  local kind = body:match('"kind":"([%u_]+)"', at)
  if item == nil or kind == nil then return nil end
  local options = body:find('"options":[', at, true)
  return {item = item, kind = KINDS[kind] or "free_text",
          options = options and array_length(body, options + #'"options":') or 0}
end

-- What to do with a question that just arrived: answer it, sometimes after a reload.
local function answer_next(q)
  question = q
  if q == nil then return QUESTION end
  return math.random() < RELOAD_P and SESSION or "answer"
end

local function pick(kind)
  local pool = answers[kind] or answers.free_text
  return pool[math.random(#pool)]
end

-- The answer as a JSON string. Free text and formulas are numbered so no two are the same: the
-- scorer caches scores by item and answer, and repeats would measure the cache.
local function answer_literal(q)
  numbered = numbered + 1
  local unique = id * 10000000 + numbered
  if q.kind == "multiple_choice" then
    return '"' .. (math.random(math.max(q.options, 1)) - 1) .. '"'
  elseif q.kind == "free_text" then
    return (pick("free_text"):gsub("%(case %d+%)", "(case " .. unique .. ")"))
  elseif q.kind == "formula" then
    return (pick("formula"):gsub("%+%d+\"$", "+" .. unique .. '"'))
  end
  return pick(q.kind)
end

local function idempotency_key()
  return string.format("%08x%08x%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff),
    math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
end

local function next_interview()
  session, auth, question, sent_answer = nil, nil, nil, nil
  errors_in_a_row = 0
  action = START
end

-- What the response to a request of type ``kind`` means for the interview; status 0 is a
-- request whose response never came (wrk reconnected).
local function handle(kind, status, body)
  counts[kind] = counts[kind] + 1
  local ok = status >= 200 and status < 300
  if not ok then
    non_2xx[kind] = non_2xx[kind] + 1
    errors_in_a_row = errors_in_a_row + 1
    if status == 0 then stats.lost = stats.lost + 1 end
    local what = status .. " " .. (body:match('"type":"urn:xlinterview:problem:([%w-]+)"') or "")
    failures[what] = (failures[what] or 0) + 1
  else
    errors_in_a_row = 0
  end
  if kind == START then
    session = ok and body:match('"session_id":"([^"]+)"')
    local token = ok and body:match('"access_token":"([^"]+)"')
    if not (session and token) then return next_interview() end  -- the invite is spent either way
    auth = {["Authorization"] = "Bearer " .. token}
    action = answer_next(parse_question(body, body:find('"question":{', 1, true)))
  elseif kind == FINISH then
    if ok then stats.interviews = stats.interviews + 1 end
    next_interview()
  elseif errors_in_a_row >= MAX_ERRORS_IN_A_ROW then
    stats.abandoned = stats.abandoned + 1
    next_interview()
  elseif kind == SESSION then
    action = QUESTION
  elseif kind == QUESTION then
    if status == 409 then
      action = FINISH  -- the interview is over (answered out, or past its deadline)
    elseif ok then
      question = parse_question(body, 1)
      action = question and "answer" or QUESTION
    end  -- else read it again
  elseif not ok then
    -- Not resent on failure: a 503 scoring-delayed means the answer is saved and scored later,
    -- a 409 that the interview moved on; reading the question again shows which.
    action = QUESTION
  elseif kind ~= RESEND and math.random() < RESEND_P then
    action = RESEND
    resend_body = body  -- decide what follows once the resend is answered, from the first reply
  else
    if kind == RESEND then
      -- The same key must bring back the same stored answer, not store a second one.
      if body:match('"answer_id":"([^"]+)"') ~= resend_body:match('"answer_id":"([^"]+)"') then
        non_2xx[kind] = non_2xx[kind] + 1
        failures["200 resend-differed"] = (failures["200 resend-differed"] or 0) + 1
      end
      body = resend_body
    end
    if body:match('"finished":true}%s*$') then
      action = FINISH
    else
      action = answer_next(parse_question(body, body:find('"next_question":{', 1, true)))
    end
  end
end

local function next_request()
  if action == START then
    local invite = invites[next_invite]
    if invite == nil then
      -- Out of seeded invites: this connection stops; the report says so.
      stats.out_of_invites = 1
      wrk.thread:stop()
      pending = nil
      return wrk.format("GET", "/healthz")
    end
    next_invite = next_invite + 1
    pending = START
    return wrk.format("POST", "/api/v1/invites/accept", {["Content-Type"] = "application/json"},
      '{"invite_token":"' .. invite .. '"}')
  end
  local base = "/api/v1/sessions/" .. session
  if action == SESSION then
    pending = SESSION
    return wrk.format("GET", base, auth)
  elseif action == QUESTION then
    pending = QUESTION
    return wrk.format("GET", base .. "/question", auth)
  elseif action == RESEND then
    pending = RESEND
    return sent_answer
  elseif action == FINISH then
    pending = FINISH
    return wrk.format("POST", base .. "/finish", auth)
  end
  pending = "submit answer [" .. question.kind .. "]"
  local headers = {["Authorization"] = auth["Authorization"], ["Content-Type"] = "application/json"}
  sent_answer = wrk.format("POST", base .. "/answers", headers, '{"item_id":"' .. question.item .. '","answer":'
    .. answer_literal(question) .. ',"idempotency_key":"' .. idempotency_key() .. '"}')
  return sent_answer
end

function request()
  if pending ~= nil then
    if made == 1 and last ~= nil then
      -- wrk calls request() once on its first thread before the run to check the script and
      -- sends nothing, so the first request goes out now (and a first request lost before any
      -- response came is sent again as it was).
      made = 2
      return last
    end
    handle(pending, 0, "")
  end
  made = made + 1
  last = next_request()
  return last
end

function response(status, headers, body)
  local kind = pending
  pending = nil
  if kind ~= nil then handle(kind, status, body) end
end

function done(summary, latency, requests)
  local types, totals, failed = {}, {interviews = 0, abandoned = 0, lost = 0, out_of_invites = 0}, {}
  for _, name in ipairs(TYPES) do types[name] = {0, 0} end
  for _, thread in ipairs(threads) do
    local c, e, s = thread:get("counts"), thread:get("non_2xx"), thread:get("stats")
    for name, n in pairs(c) do
      types[name][1] = types[name][1] + n
      types[name][2] = types[name][2] + e[name]
    end
    for name, n in pairs(s) do totals[name] = totals[name] + n end
    for what, n in pairs(thread:get("failures")) do failed[what] = (failed[what] or 0) + n end
  end
  local rows = {}
  for _, name in ipairs(TYPES) do
    table.insert(rows, string.format('"%s": [%d, %d]', name, types[name][1], types[name][2]))
  end
  local failures_json = {}
  for what, n in pairs(failed) do table.insert(failures_json, string.format('"%s": %d', what, n)) end
  local e = summary.errors
  io.write(string.format(MARKER .. '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"errors": %d, "non_2xx": %d, "types": {%s}, "interviews": %d, "abandoned": %d, "lost": %d, '
    .. '"threads_out_of_invites": %d, "give_up_after": %d, "failures": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status, table.concat(rows, ", "),
    totals.interviews, totals.abandoned, totals.lost, totals.out_of_invites, MAX_ERRORS_IN_A_ROW,
    table.concat(failures_json, ", ")))
end
