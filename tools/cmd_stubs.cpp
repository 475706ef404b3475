#include "commands.hpp"
namespace maskmaker::cli {
void register_latency(CLI::App&, CommonOptions&) {}
void register_serve(CLI::App&, CommonOptions&) {}
void register_keys(CLI::App&) {}
}
