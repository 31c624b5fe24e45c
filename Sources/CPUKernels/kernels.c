// CPU kernels (C): see Docs/architecture.md.
#include "cpu_kernels.h"
int hp_kernels_version(void) { return 1; }
