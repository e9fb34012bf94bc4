-- wrk script of the llmgate benchmark (bench/run.py): POSTs one fixed chat completion request.
--
--   BENCH_BODY     the JSON body (default: the one below)
--   BENCH_HEADERS  extra headers, "Name: value" pairs separated by "|"
--                  (e.g. "Authorization: Basic YmVuY2g6YmVuY2g=" or "apikey: bench-key")
--
-- The script defines no request()/response() function, so wrk builds the request once and keeps
-- its fast path; wrk itself reports "Non-2xx or 3xx responses" and socket errors, which run.py
-- parses to fail a run that was not all 2xx.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("BENCH_BODY")
    or '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in one short sentence."}]}'
for name, value in string.gmatch(os.getenv("BENCH_HEADERS") or "", "([^:|]+):%s*([^|]*)") do
    wrk.headers[name] = value
end
