# FindOpenBLAS: locates OpenBLAS and defines OpenBLAS::OpenBLAS and
# OpenBLAS_FOUND. The OpenMP build (Debian: libopenblas-openmp-dev) is
# preferred: it shares libgomp's thread pool with retort's own OpenMP loops,
# whereas the pthread build's threads fight the idle-spinning OpenMP workers
# for the cores (10x slower small GEMMs on 2 cores, measured).
set(_openblas_omp_lib /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp)
set(_openblas_omp_inc /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp)
find_path(OPENBLAS_INCLUDE_DIR NAMES cblas.h HINTS ${_openblas_omp_inc} NO_DEFAULT_PATH)
find_library(OPENBLAS_LIBRARY NAMES openblas HINTS ${_openblas_omp_lib} NO_DEFAULT_PATH)
if(NOT OPENBLAS_LIBRARY OR NOT OPENBLAS_INCLUDE_DIR)
  find_path(OPENBLAS_INCLUDE_DIR NAMES cblas.h PATH_SUFFIXES openblas)
  find_library(OPENBLAS_LIBRARY NAMES openblas)
  if(OPENBLAS_LIBRARY)
    message(STATUS "retort: using a non-OpenMP OpenBLAS (${OPENBLAS_LIBRARY}); "
                   "apt-get install -y libopenblas-openmp-dev is faster")
  endif()
endif()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(OpenBLAS REQUIRED_VARS OPENBLAS_LIBRARY OPENBLAS_INCLUDE_DIR)
if(OpenBLAS_FOUND AND NOT TARGET OpenBLAS::OpenBLAS)
  add_library(OpenBLAS::OpenBLAS UNKNOWN IMPORTED)
  set_target_properties(OpenBLAS::OpenBLAS PROPERTIES
    IMPORTED_LOCATION "${OPENBLAS_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${OPENBLAS_INCLUDE_DIR}")
endif()
mark_as_advanced(OPENBLAS_INCLUDE_DIR OPENBLAS_LIBRARY)
