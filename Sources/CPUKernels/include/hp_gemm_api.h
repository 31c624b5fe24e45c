// hp_gemm_api.h — the C entry points the CPU backend uses for threads, CPU features, GEMM, W4A16 and attention.
// They are declared once, in cpu_kernels.h (the fast kernels with run-time ISA dispatch and scalar twins).
#pragma once
#include "cpu_kernels.h"
