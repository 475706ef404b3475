#include "service/keys_db.hpp"

#include "service/sqlite_stmt.hpp"

#include <memory>

#include "service/keys_pg.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include "maskmaker/maskmaker.hpp"

namespace maskmaker::service {
namespace {

std::string hex(const unsigned char* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) { s += d[p[i] >> 4]; s += d[p[i] & 15]; }
  return s;
}

// Every result checked; storage failures are 503s (service/sqlite_stmt.hpp).
[[noreturn]] void fail(sqlite3* db, int rc) { sqlite_fail(db, rc, "keys database"); }

void check(sqlite3* db, int rc) {
  if (rc != SQLITE_OK) fail(db, rc);
}

struct Stmt : SqliteStmt {
  Stmt(sqlite3* db, const char* sql) : SqliteStmt(db, sql, "keys database") {}
};

std::optional<int64_t> opt_int(sqlite3_stmt* s, int col) {
  if (sqlite3_column_type(s, col) == SQLITE_NULL) return std::nullopt;
  return sqlite3_column_int64(s, col);
}
std::string text(sqlite3_stmt* s, int col) {
  auto p = sqlite3_column_text(s, col);
  return p ? reinterpret_cast<const char*>(p) : "";
}

constexpr const char* kColumns = "id, name, prefix, credits, used, disabled, rate_per_minute, endpoints, created_at";

KeyRecord read_record(sqlite3_stmt* s) {
  KeyRecord r;
  r.id = sqlite3_column_int64(s, 0);
  r.name = text(s, 1);
  r.prefix = text(s, 2);
  r.credits = opt_int(s, 3);
  r.used = sqlite3_column_int64(s, 4);
  r.disabled = sqlite3_column_int64(s, 5) != 0;
  r.rate_per_minute = opt_int(s, 6);
  r.endpoints = text(s, 7);
  r.created_at = text(s, 8);
  return r;
}

}  // namespace

bool is_postgres_url(const std::string& s) {
  return s.rfind("postgresql://", 0) == 0 || s.rfind("postgres://", 0) == 0;
}

std::unique_ptr<KeyStore> open_key_store(const std::string& path_or_url) {
  if (is_postgres_url(path_or_url)) return std::make_unique<PgKeyStore>(path_or_url);
  return std::make_unique<KeysDb>(path_or_url);
}

std::string KeyStore::new_key() {
  unsigned char random[24];
  if (RAND_bytes(random, sizeof random) != 1) throw Error(ErrorCode::Internal, "no randomness for a new key");
  return "mk_" + hex(random, sizeof random);
}

std::string KeyStore::hash_key(const std::string& key) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(key.data(), key.size(), digest, &len, EVP_sha256(), nullptr);
  return hex(digest, len);
}

KeysDb::KeysDb(const std::string& path) : path_(path) {
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr) != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error(ErrorCode::InvalidArgument, "cannot open keys database " + path + ": " + msg);
  }
  check(db_, sqlite3_busy_timeout(db_, 5000));
  exec("PRAGMA journal_mode=WAL");
  exec("PRAGMA synchronous=NORMAL");
  // A delimited raw string: with R"( the first )" would end it and cut the table's closing parenthesis.
  exec(R"sql(CREATE TABLE IF NOT EXISTS keys (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          name TEXT NOT NULL,
          key_hash TEXT NOT NULL UNIQUE,
          prefix TEXT NOT NULL,
          credits INTEGER,
          used INTEGER NOT NULL DEFAULT 0,
          disabled INTEGER NOT NULL DEFAULT 0,
          rate_per_minute INTEGER,
          endpoints TEXT NOT NULL DEFAULT '*',
          created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))))sql");
  exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
  exec("INSERT INTO schema_version (version) SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM schema_version)");
}

KeysDb::~KeysDb() { sqlite3_close(db_); }

void KeysDb::exec(const char* sql) {
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) fail(db_, rc);
}

std::pair<std::string, KeyRecord> KeysDb::add(const std::string& name, std::optional<int64_t> credits,
                                              std::optional<int64_t> rate, const std::string& endpoints) {
  std::string key = new_key();
  std::lock_guard lock(mutex_);
  Stmt st(db_, "INSERT INTO keys (name, key_hash, prefix, credits, rate_per_minute, endpoints) VALUES (?, ?, ?, ?, ?, ?)");
  st.bind(1, name).bind(2, hash_key(key)).bind(3, key.substr(0, 7)).bind(4, credits).bind(5, rate).bind(6, endpoints);
  st.step();
  int64_t id = sqlite3_last_insert_rowid(db_);
  Stmt q(db_, (std::string("SELECT ") + kColumns + " FROM keys WHERE id = ?").c_str());
  q.bind(1, id);
  if (q.step() != SQLITE_ROW) throw Error(ErrorCode::Internal, "keys database: the new key is not there");
  return {key, read_record(q.get())};
}

std::optional<KeyRecord> KeysDb::find_by_key(const std::string& plain_key) {
  std::lock_guard lock(mutex_);
  Stmt q(db_, (std::string("SELECT ") + kColumns + " FROM keys WHERE key_hash = ?").c_str());
  q.bind(1, hash_key(plain_key));
  if (q.step() != SQLITE_ROW) return std::nullopt;
  return read_record(q.get());
}

std::optional<KeyRecord> KeysDb::find(const std::string& id_or_name) {
  std::lock_guard lock(mutex_);
  Stmt q(db_, (std::string("SELECT ") + kColumns + " FROM keys WHERE CAST(id AS TEXT) = ?1 OR name = ?1 ORDER BY id LIMIT 1").c_str());
  q.bind(1, id_or_name);
  if (q.step() != SQLITE_ROW) return std::nullopt;
  return read_record(q.get());
}

std::vector<KeyRecord> KeysDb::list() {
  std::lock_guard lock(mutex_);
  Stmt q(db_, (std::string("SELECT ") + kColumns + " FROM keys ORDER BY id").c_str());
  std::vector<KeyRecord> out;
  while (q.step() == SQLITE_ROW) out.push_back(read_record(q.get()));
  return out;
}

bool KeysDb::set_disabled(int64_t id, bool disabled) {
  std::lock_guard lock(mutex_);
  Stmt st(db_, "UPDATE keys SET disabled = ? WHERE id = ?");
  st.bind(1, int64_t(disabled)).bind(2, id).step();
  return sqlite3_changes(db_) == 1;
}

std::optional<int64_t> KeysDb::add_credits(int64_t id, int64_t amount) {
  std::lock_guard lock(mutex_);
  Stmt st(db_, "UPDATE keys SET credits = MAX(0, COALESCE(credits, 0) + ?) WHERE id = ? RETURNING credits");
  st.bind(1, amount).bind(2, id);
  if (st.step() != SQLITE_ROW) return std::nullopt;
  const int64_t credits = sqlite3_column_int64(st.get(), 0);
  st.finish();
  return credits;
}

bool KeysDb::set_unlimited(int64_t id) {
  std::lock_guard lock(mutex_);
  Stmt st(db_, "UPDATE keys SET credits = NULL WHERE id = ?");
  st.bind(1, id).step();
  return sqlite3_changes(db_) == 1;
}

bool KeysDb::consume(int64_t id, std::optional<int64_t>& remaining) {
  std::lock_guard lock(mutex_);
  // One statement: the check and the decrement are atomic, also across processes sharing the file.
  Stmt st(db_, "UPDATE keys SET credits = CASE WHEN credits IS NULL THEN NULL ELSE credits - 1 END, used = used + 1 "
               "WHERE id = ? AND disabled = 0 AND (credits IS NULL OR credits > 0) RETURNING credits");
  st.bind(1, id);
  if (st.step() != SQLITE_ROW) return false;
  const std::optional<int64_t> left = opt_int(st.get(), 0);
  st.finish();
  remaining = left;
  return true;
}

bool KeysDb::refund(int64_t id) {
  std::lock_guard lock(mutex_);
  Stmt st(db_, "UPDATE keys SET credits = CASE WHEN credits IS NULL THEN NULL ELSE credits + 1 END, "
               "used = MAX(0, used - 1) WHERE id = ?");
  st.bind(1, id);
  st.step();
  return sqlite3_changes(db_) == 1;
}

bool KeysDb::reachable(std::string& why) {
  std::lock_guard lock(mutex_);
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v2(db_, "SELECT COUNT(*) FROM keys WHERE 0", -1, &s, nullptr);
  if (rc == SQLITE_OK) rc = sqlite3_step(s);
  sqlite3_finalize(s);
  if (rc == SQLITE_ROW || rc == SQLITE_DONE) return true;
  why = sqlite3_errmsg(db_);
  return false;
}

size_t KeysDb::active_count() {
  std::lock_guard lock(mutex_);
  Stmt q(db_, "SELECT COUNT(*) FROM keys WHERE disabled = 0");
  if (q.step() != SQLITE_ROW) return 0;
  return size_t(sqlite3_column_int64(q.get(), 0));
}

}  // namespace maskmaker::service
