// The one place where library errors become HTTP statuses.
#pragma once

#include "maskmaker/maskmaker.hpp"

namespace maskmaker::server {

int http_status(ErrorCode code);

}  // namespace maskmaker::server
