#include "core/parallel.h"

#include <omp.h>

namespace gpt {

int num_threads() { return omp_get_max_threads(); }

}  // namespace gpt
