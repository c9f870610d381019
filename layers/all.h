// Every layer, for models/ and tools.
#pragma once
#include "layers/layers.h"
#include "layers/module.h"
#include "layers/residual.h"
#include "layers/sequential.h"
#include "layers/summary.h"
