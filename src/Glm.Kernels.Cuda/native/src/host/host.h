#pragma once
#include <string>
#include "glm_cuda.h"
#include "../common/formats.h"
#include "../common/checks.h"

namespace glm {
void set_error(const std::string& message);
}

#define GLM_REQUIRE(cond, message)          \
  do {                                      \
    if (!(cond)) {                          \
      glm::set_error(message);              \
      return GLM_ERR_ARGUMENT;              \
    }                                       \
  } while (0)
