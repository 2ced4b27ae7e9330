-- wrk script: POSTs the form in FORM (application/x-www-form-urlencoded); wrk counts the answers
-- other than 2xx.
wrk.method = "POST"
wrk.body = os.getenv("FORM") or ""
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
