#pragma once
#include <string>
#include "glm_cuda.h"
#include "../common/formats.h"
#include "../common/checks.h"

namespace glm {
void set_error(const std::string& message);
}
