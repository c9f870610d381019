// The engine's typed exceptions (defined in kernels/error.h so the lowest
// layer can throw them too). Library code throws these; only the CLI turns
// them into a message and an exit code.
#pragma once
#include "kernels/error.h"
