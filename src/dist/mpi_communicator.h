// The MPI implementation of dist::Communicator (mpi_communicator.cpp, compiled only when CMake
// found MPI). Only world() calls this, and only in that build.
#pragma once
#include <memory>

#include "dist/communicator.h"

namespace gpt::dist {

// Initialises MPI (threads: funneled, the OpenMP workers never call MPI) and wraps MPI_COMM_WORLD.
// MPI_Finalize runs at exit.
std::unique_ptr<Communicator> make_mpi_communicator();

}  // namespace gpt::dist
