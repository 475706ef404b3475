#include "server/http_errors.hpp"

#include <nlohmann/json.hpp>

namespace maskmaker::server {

int http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidArgument:
    case ErrorCode::UnsupportedImage:
    case ErrorCode::BadImage:
    case ErrorCode::ImageTooLarge:
    case ErrorCode::ForbiddenUrl: return 400;
    case ErrorCode::Unauthorized: return 401;
    case ErrorCode::Forbidden: return 403;
    case ErrorCode::NotFound: return 404;
    case ErrorCode::NoCredits: return 406;
    case ErrorCode::PayloadTooLarge: return 413;
    case ErrorCode::RateLimited: return 429;
    case ErrorCode::FetchFailed: return 502;
    case ErrorCode::NotReady:
    case ErrorCode::Overloaded:
    case ErrorCode::StorageUnavailable: return 503;
    case ErrorCode::Timeout: return 504;
    case ErrorCode::ModelError:
    case ErrorCode::Internal:
    default: return 500;
  }
}

int retry_after_seconds(ErrorCode code) {
  switch (code) {
    case ErrorCode::NotReady:
    case ErrorCode::Overloaded:
    case ErrorCode::StorageUnavailable: return 2;
    default: return 0;
  }
}

void set_json_error(HttpResponse& res, int status, const std::string& message) {
  using nlohmann::json;
  res.status = status;
  res.set_content(json{{"error", message}}.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

}  // namespace maskmaker::server
