// The one place where library errors become HTTP statuses.
#pragma once

#include "maskmaker/maskmaker.hpp"

namespace maskmaker::server {

int http_status(ErrorCode code);
// The Retry-After (seconds) that goes with an error's answer; 0 for none.
int retry_after_seconds(ErrorCode code);

}  // namespace maskmaker::server
