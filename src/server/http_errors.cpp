#include "server/http_errors.hpp"

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

}  // namespace maskmaker::server
