// The one place where library errors become HTTP statuses.
#pragma once

#include <string>

#include "maskmaker/maskmaker.hpp"
#include "server/http_server.hpp"

namespace maskmaker::server {

int http_status(ErrorCode code);
// The Retry-After (seconds) that goes with an error's answer; 0 for none.
int retry_after_seconds(ErrorCode code);

// The one error writer: `status` and a JSON body {"error": message} (text that is not UTF-8 is replaced).
void set_json_error(HttpResponse& res, int status, const std::string& message);

}  // namespace maskmaker::server
