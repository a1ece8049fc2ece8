# harness-gateway: civetweb REST -> gRPC. Pure pieces (validation, policy,
# JSON, config) are a library so tests/unit/gateway can link them.
add_library(hs_gateway_core STATIC
  ${CMAKE_CURRENT_LIST_DIR}/validate.c
  ${CMAKE_CURRENT_LIST_DIR}/policy.c
  ${CMAKE_CURRENT_LIST_DIR}/json.c
  ${CMAKE_CURRENT_LIST_DIR}/config.c)
target_include_directories(hs_gateway_core PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(hs_gateway_core PUBLIC hs_client hs_proto hs_common PkgConfig::JANSSON)

add_executable(harness-gateway
  ${CMAKE_CURRENT_LIST_DIR}/main.c
  ${CMAKE_CURRENT_LIST_DIR}/server.c)
target_link_libraries(harness-gateway PRIVATE hs_gateway_core hs_client hs_proto hs_common
  civetweb::civetweb-c-library PkgConfig::JANSSON Threads::Threads)
set_target_properties(harness-gateway PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/gateway)
