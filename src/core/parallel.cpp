#include "core/parallel.h"

#include <omp.h>

#include "core/cpu.h"

namespace gpt {

int num_threads() { return omp_get_max_threads(); }

void set_num_threads(int n) { omp_set_num_threads(n > 0 ? n : cpu().logical_cores); }

}  // namespace gpt
