#pragma once
// Everything a model needs from core, in one include.
#include "core/autograd/grad_mode.h"
#include "core/autograd/recompute.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/index.h"
#include "core/ops/linalg.h"
#include "core/ops/nn.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "core/runtime.h"
#include "core/tensor.h"
