// One SQLite statement wrapper for the key store (service) and the job store (server): every result checked, and
// one rule for what a failure means. A database that is busy (a lock held past the busy timeout), full,
// read-only, failing I/O or otherwise unusable is StorageUnavailable (503 + Retry-After, nothing charged, logged);
// anything else is a bug (Internal, 500). Never an empty answer that would read as "unknown key" or "no credits".
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "maskmaker/maskmaker.hpp"

namespace maskmaker::service {

// `what`: "keys database", "jobs database" (for the log and the message).
[[noreturn]] inline void sqlite_fail(sqlite3* db, int rc, const char* what) {
  const std::string detail = std::string(sqlite3_errstr(rc)) + " (" + (db ? sqlite3_errmsg(db) : "no connection") + ")";
  switch (rc & 0xFF) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_NOMEM:
    case SQLITE_PROTOCOL:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      spdlog::error("{}: {}", what, detail);
      throw Error(ErrorCode::StorageUnavailable,
                  std::string("the ") + what + " is unavailable (" + sqlite3_errstr(rc) + "): retry shortly");
    default: throw Error(ErrorCode::Internal, std::string(what) + ": " + detail);
  }
}

class SqliteStmt {
 public:
  SqliteStmt(sqlite3* db, const char* sql, const char* what) : db_(db), what_(what) {
    check(sqlite3_prepare_v2(db_, sql, -1, &s_, nullptr));
  }
  ~SqliteStmt() { sqlite3_finalize(s_); }
  SqliteStmt(const SqliteStmt&) = delete;
  SqliteStmt& operator=(const SqliteStmt&) = delete;

  SqliteStmt& bind(int i, int64_t v) { check(sqlite3_bind_int64(s_, i, v)); return *this; }
  SqliteStmt& bind(int i, int v) { return bind(i, int64_t(v)); }
  SqliteStmt& bind(int i, bool v) { return bind(i, int64_t(v ? 1 : 0)); }
  SqliteStmt& bind(int i, double v) { check(sqlite3_bind_double(s_, i, v)); return *this; }
  SqliteStmt& bind(int i, const std::string& v) {
    check(sqlite3_bind_text(s_, i, v.c_str(), int(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  SqliteStmt& bind_text_or_null(int i, const std::string& v) {
    if (v.empty()) check(sqlite3_bind_null(s_, i));
    else bind(i, v);
    return *this;
  }
  SqliteStmt& bind(int i, const std::optional<int64_t>& v) {
    check(v ? sqlite3_bind_int64(s_, i, *v) : sqlite3_bind_null(s_, i));
    return *this;
  }
  SqliteStmt& bind(int i, const std::vector<uint8_t>& v) {
    check(v.empty() ? sqlite3_bind_null(s_, i)
                    : sqlite3_bind_blob64(s_, i, v.data(), sqlite3_uint64(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  // SQLITE_ROW or SQLITE_DONE; anything else throws.
  int step() {
    const int rc = sqlite3_step(s_);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) sqlite_fail(db_, rc, what_);
    return rc;
  }
  // For UPDATE ... RETURNING: the change is committed when the statement runs to its end, and a failing commit
  // (busy, I/O) is only reported there, not by the first step's row.
  void finish() {
    while (step() == SQLITE_ROW) {
    }
  }

  std::string text(int col) const {
    auto p = sqlite3_column_text(s_, col);
    return p ? std::string(reinterpret_cast<const char*>(p), size_t(sqlite3_column_bytes(s_, col))) : "";
  }
  std::vector<uint8_t> blob(int col) const {
    auto p = static_cast<const uint8_t*>(sqlite3_column_blob(s_, col));
    int n = sqlite3_column_bytes(s_, col);
    return p ? std::vector<uint8_t>(p, p + n) : std::vector<uint8_t>{};
  }
  std::optional<int64_t> opt_int(int col) const {
    if (sqlite3_column_type(s_, col) == SQLITE_NULL) return std::nullopt;
    return sqlite3_column_int64(s_, col);
  }
  double real(int col) const { return sqlite3_column_double(s_, col); }
  int64_t int64(int col) const { return sqlite3_column_int64(s_, col); }
  sqlite3_stmt* get() const { return s_; }

 private:
  void check(int rc) const {
    if (rc != SQLITE_OK) sqlite_fail(db_, rc, what_);
  }
  sqlite3* db_;
  const char* what_;
  sqlite3_stmt* s_ = nullptr;
};

}  // namespace maskmaker::service
