// The jobs database's file and default folder (jobs_store.hpp): private to the user that runs the server.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "maskmaker/maskmaker.hpp"
#include "server/jobs_store.hpp"

namespace maskmaker::server {
namespace {

// mkdir -p, the last folder with `mode`: whether it is there now.
bool make_dirs(const std::string& dir, mode_t mode) {
  for (size_t at = 1; (at = dir.find('/', at)) != std::string::npos; ++at) ::mkdir(dir.substr(0, at).c_str(), 0755);
  return ::mkdir(dir.c_str(), mode) == 0 || errno == EEXIST;
}

}  // namespace

std::string private_state_dir() {
  // The first of these that can be made: systemd's StateDirectory=, the XDG state folder, and /tmp (a container's
  // or a systemd unit's read-only root and absent home leave only that).
  std::vector<std::string> candidates;
  if (const char* d = std::getenv("STATE_DIRECTORY"); d && *d == '/') {
    const std::string dirs = d;  // several, ':'-separated, when the unit names several
    candidates.push_back(dirs.substr(0, dirs.find(':')));
  }
  if (const char* x = std::getenv("XDG_STATE_HOME"); x && *x == '/')
    candidates.push_back(std::string(x) + "/maskmaker");
  else if (const char* h = std::getenv("HOME"); h && *h == '/' && std::string(h) != "/")
    candidates.push_back(std::string(h) + "/.local/state/maskmaker");
  const char* tmp = std::getenv("TMPDIR");
  candidates.push_back(std::string(tmp && *tmp == '/' ? tmp : "/tmp") + "/maskmaker-" + std::to_string(geteuid()));
  for (const std::string& dir : candidates) {
    if (!make_dirs(dir, 0700)) continue;
    // Someone else's folder, or one others may write to (a name planted in /tmp), is refused, not used.
    struct stat st{};
    if (lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022) != 0)
      throw Error(ErrorCode::InvalidArgument, dir + " (for the jobs database) is not a folder of this user that only "
                                                    "it may write to: refusing to use it; set --jobs-db");
    return dir;
  }
  throw Error(ErrorCode::InvalidArgument, "no folder for the jobs database could be made (" + candidates.back() +
                                              "): set --jobs-db");
}

// The file is private: created 0600 (SQLite gives its -wal and -shm files the same mode), and one that another
// user made (as in a shared /tmp) is refused rather than trusted.
void prepare_private_file(const std::string& path) {
  struct stat st{};
  for (int tries = 0; tries < 2; ++tries) {
    if (lstat(path.c_str(), &st) == 0) {
      if (!S_ISREG(st.st_mode))
        throw Error(ErrorCode::InvalidArgument, "the jobs database " + path + " is not a regular file");
      if (st.st_uid != geteuid())
        throw Error(ErrorCode::InvalidArgument, "the jobs database " + path + " belongs to another user (uid " +
                                                    std::to_string(st.st_uid) + "): refusing to open it");
      return;
    }
    if (errno != ENOENT)
      throw Error(ErrorCode::InvalidArgument, "cannot open the jobs database " + path + ": " + std::strerror(errno));
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) {
      ::close(fd);
      return;
    }
    if (errno != EEXIST)
      throw Error(ErrorCode::InvalidArgument, "cannot create the jobs database " + path + ": " + std::strerror(errno));
  }
}

}  // namespace maskmaker::server
