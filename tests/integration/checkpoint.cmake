# CheckpointService over grpcio against a real harnessd (no remote configured,
# so the libgit2 push leak suppressed in the unit tests cannot appear here).
hs_integration_test(checkpoints test_checkpoints.py TIMEOUT 600)
