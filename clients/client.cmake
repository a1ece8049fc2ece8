# libharness-client: the blocking gRPC client shared by harness-gateway and
# harnessctl (clients/client.h).
add_library(hs_client STATIC
  ${CMAKE_CURRENT_LIST_DIR}/client.c
  ${CMAKE_CURRENT_LIST_DIR}/status.c)
target_include_directories(hs_client PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(hs_client PUBLIC hs_common PkgConfig::PROTOBUFC PRIVATE PkgConfig::GRPC)
