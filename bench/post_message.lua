-- wrk script: POST one SMS per request to /api/messages.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("HERALD_KEY") or "bench-key-0123456789abcdef")
wrk.body = '{"channel":"sms","recipient":"+14153234567","body":"Your order #1234 is ready for pickup"}'
