# SandboxService over grpcio: bwrap for real, firecracker against tests/doubles/fc_emulator.py.
hs_integration_test(sandboxes test_sandboxes.py TIMEOUT 600)
