# The harnessd executable (included by server/CMakeLists.txt).
add_library(hs_config STATIC ${CMAKE_CURRENT_SOURCE_DIR}/config.c)
target_include_directories(hs_config PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(hs_config PUBLIC hs_common)

add_executable(harnessd ${CMAKE_CURRENT_SOURCE_DIR}/main.c)
target_link_libraries(harnessd PRIVATE hs_health hs_config hs_auth_service hs_sandbox_service hs_checkpoint_service hs_auth hs_rpc hs_store hs_proto hs_common)
