-- wrk script: POST the seed's login body as JSON (bench/auth_bench.sh).
wrk.method = "POST"
wrk.body = '{"email":"alice@example.com","password":"password123"}'
wrk.headers["Content-Type"] = "application/json"
