# harness-gateway end to end: real gateway + harnessd (+ the user-service double).
hs_integration_test(gateway test_gateway.py)
