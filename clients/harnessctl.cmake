# hs_pbjson: proto3 JSON <-> protobuf-c through descriptors (clients/pbjson.h).
add_library(hs_pbjson STATIC ${CMAKE_CURRENT_LIST_DIR}/pbjson.c ${CMAKE_CURRENT_LIST_DIR}/pbjson_text.c)
target_include_directories(hs_pbjson PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(hs_pbjson PUBLIC hs_common PkgConfig::PROTOBUFC PkgConfig::JANSSON PRIVATE m)

# harnessctl: the operator CLI for every RPC (clients/harnessctl/).
file(GLOB HS_CTL_SRCS ${CMAKE_CURRENT_LIST_DIR}/harnessctl/*.c)
add_executable(harnessctl ${HS_CTL_SRCS})
target_link_libraries(harnessctl PRIVATE hs_client hs_pbjson hs_proto hs_common Threads::Threads)

