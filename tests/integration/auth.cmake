# AuthService over grpcio, both backends (the upstream one against tests/doubles/user_service.py).
hs_integration_test(auth test_auth.py)
