// cooperative_groups/reduce.h for the CUDA simulator: cg::reduce and its operators live in
// cooperative_groups.h, which this includes.
#pragma once
#include "../cooperative_groups.h"
