# HealthService: heartbeats, stall detection, recovery, watchers (grpcio).
hs_integration_test(tasks test_tasks.py TIMEOUT 300)
# libgit2 1.5 leaks a thread's error buffer when the thread exits after
# git_error_clear() (threadstate_dispose frees error_t.message, which clear
# set to NULL, not error_buf): recovery workers and RPC workers that restored
# checkpoints hit it at shutdown under ASan. Not ours; see the suppression.
set_property(TEST integration.tasks APPEND PROPERTY ENVIRONMENT
  "LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/unit/health/lsan.supp")
