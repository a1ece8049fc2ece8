# hs_public_headers(TARGET header...): a folder is one library whose headers
# are private to it, except the ones listed here. Dependents see only those,
# through a build-tree folder that holds just them (symlinks to the sources),
# so an internal header of one module cannot be included by another.
function(hs_public_headers target)
  set(dir ${CMAKE_BINARY_DIR}/include/${target})
  file(REMOVE_RECURSE ${dir})
  file(MAKE_DIRECTORY ${dir})
  foreach(h IN LISTS ARGN)
    file(CREATE_LINK ${CMAKE_CURRENT_SOURCE_DIR}/${h} ${dir}/${h} SYMBOLIC)
  endforeach()
  target_include_directories(${target} PUBLIC ${dir} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
endfunction()

# hs_white_box(TARGET folder...): a unit test that tests a module's internals
# sees that module's private headers.
function(hs_white_box target)
  foreach(d IN LISTS ARGN)
    target_include_directories(${target} PRIVATE ${CMAKE_SOURCE_DIR}/${d})
  endforeach()
endfunction()
