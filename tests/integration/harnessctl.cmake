# harnessctl against a real harnessd: every verb, exit codes, token cache, watch, demo.
hs_integration_test(harnessctl test_harnessctl.py TIMEOUT 900)
# harnessd restores checkpoints (checkpoint verbs, demo recovery): the known
# libgit2 1.5 thread error-buffer leak at shutdown under ASan, suppressed as
# for integration.tasks (tests/unit/health/lsan.supp). harnessctl itself
# does not link libgit2.
set_property(TEST integration.harnessctl APPEND PROPERTY ENVIRONMENT
  "LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/unit/health/lsan.supp")
