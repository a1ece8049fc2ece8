# clients/pbjson: proto3 JSON mapping over the real generated descriptors.
include_guard(GLOBAL)
add_executable(test_pbjson ${CMAKE_CURRENT_LIST_DIR}/test_pbjson.c)
target_link_libraries(test_pbjson PRIVATE hs_pbjson hs_proto PkgConfig::CMOCKA)
add_test(NAME unit.clients.pbjson COMMAND test_pbjson)
set_tests_properties(unit.clients.pbjson PROPERTIES TIMEOUT 30)
