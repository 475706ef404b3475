// maskmaker run: masks for files, folders and globs; one failed file is reported and the rest go on.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <glob.h>
#include <iostream>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "commands.hpp"
#include "maskmaker/service.hpp"

namespace fs = std::filesystem;

namespace maskmaker::cli {
namespace {

bool is_image_name(const fs::path& p) {
  static const std::set<std::string> exts = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"};
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), ::tolower);
  return exts.count(e) > 0;
}

// Files as given; folders walked recursively for image files; glob patterns expanded. Missing paths are
// returned too so that they are reported as failures.
std::vector<fs::path> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<fs::path> out;
  for (const auto& in : inputs) {
    std::error_code ec;
    if (fs::is_directory(in, ec)) {
      std::vector<fs::path> found;
      for (auto& e : fs::recursive_directory_iterator(in, fs::directory_options::skip_permission_denied, ec))
        if (e.is_regular_file() && is_image_name(e.path())) found.push_back(e.path());
      std::sort(found.begin(), found.end());
      out.insert(out.end(), found.begin(), found.end());
    } else if (!fs::exists(in, ec) && in.find_first_of("*?[") != std::string::npos) {
      glob_t g{};
      if (glob(in.c_str(), 0, nullptr, &g) == 0)
        for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
      else
        out.emplace_back(in);
      globfree(&g);
    } else {
      out.emplace_back(in);
    }
  }
  return out;
}

// Every instance as the native API shows it (its mask as COCO RLE), and whether it was a negative one.
nlohmann::json instances_json(const MaskResult& r) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& inst : r.instances) {
    nlohmann::json j = service::instance_json(inst, service::MaskEncoding::Rle);
    j["negative"] = inst.negative;
    list.push_back(std::move(j));
  }
  return list;
}

// The files being read, by device and inode (so that another spelling of a path, or a hard link, is the same file).
using FileId = std::pair<dev_t, ino_t>;
std::set<FileId> file_ids(const std::vector<fs::path>& files) {
  std::set<FileId> ids;
  struct stat st {};
  for (const auto& f : files)
    if (::stat(f.c_str(), &st) == 0) ids.emplace(st.st_dev, st.st_ino);
  return ids;
}

// Writes an output file safely: never over an input, never through a symbolic link (a link planted where an
// output goes would otherwise redirect the write anywhere the user can write), and all or nothing (a new file
// beside the target, renamed over it once complete). Throws with the reason; the caller counts it as a failure.
void write_output(const fs::path& target, const void* data, size_t size, const std::set<FileId>& inputs) {
  struct stat st {};
  if (::lstat(target.c_str(), &st) == 0) {
    if (S_ISLNK(st.st_mode))
      throw Error(ErrorCode::InvalidArgument, "refusing to write " + target.string() + ": it is a symbolic link");
    if (inputs.count({st.st_dev, st.st_ino}))
      throw Error(ErrorCode::InvalidArgument, "refusing to write " + target.string() + ": it is an input image (choose another --out)");
    if (!S_ISREG(st.st_mode))
      throw Error(ErrorCode::InvalidArgument, "refusing to write " + target.string() + ": it is not a regular file");
  }
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::string temp = (dir / ("." + target.filename().string() + ".XXXXXX")).string();
  const int fd = ::mkstemp(temp.data());  // O_CREAT | O_EXCL: a fresh file, never an existing link
  if (fd < 0) throw Error(ErrorCode::InvalidArgument, "cannot write " + target.string() + ": " + std::strerror(errno));
  const mode_t mask = ::umask(0);
  ::umask(mask);
  bool ok = ::fchmod(fd, 0666 & ~mask) == 0;
  int err = ok ? 0 : errno;
  const auto* p = static_cast<const char*>(data);
  for (size_t left = size; ok && left > 0;) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) { ok = false; err = n < 0 ? errno : EIO; break; }
    p += n;
    left -= size_t(n);
  }
  if (::close(fd) != 0 && ok) { ok = false; err = errno; }
  if (ok && ::rename(temp.c_str(), target.c_str()) != 0) { ok = false; err = errno; }
  if (!ok) {
    ::unlink(temp.c_str());
    throw Error(ErrorCode::InvalidArgument, "cannot write " + target.string() + ": " + std::strerror(err));
  }
}

std::vector<uint8_t> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::InvalidArgument, "cannot open " + path.string());
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}


void add_crop_options(CLI::App& run, bool& crop, CropParams& p) {
  auto* flag = run.add_flag("--crop", crop,
                            "Also write <name>.crop.png and <name>.crop-mask.png: a crop around the mask for an "
                            "inpainting model (docs/inpainting.md); the box goes into --json");
  run.add_option("--crop-padding", p.padding, "Context around the mask's box, px")->capture_default_str()->needs(flag);
  run.add_option("--crop-padding-fraction", p.padding_fraction, "More context: this fraction of the box's side")
      ->needs(flag);
  run.add_option("--crop-multiple-of", p.multiple_of, "The crop's sides are multiples of this")
      ->capture_default_str()->needs(flag);
  run.add_option("--crop-target-size", p.target_size, "Resize the crop so that its longer side is this (0: no resize)")
      ->needs(flag);
  run.add_option("--crop-min-size", p.min_size, "Each side of the crop box at least this, px")->needs(flag);
  run.add_option("--crop-aspect-ratio", p.aspect_ratio, "Width / height of the crop (0: the box's own)")->needs(flag);
}

// The crop's files and its part of --json ({"crop": ...} or {"crop": null, "crop_reason": ...}).
nlohmann::json write_crop(bool wanted, const CropParams& params, const cv::Mat& bgr, const cv::Mat& mask,
                          const fs::path& stem, const std::set<FileId>& inputs) {
  if (!wanted) return nullptr;
  std::optional<InpaintCrop> crop = crop_for_inpainting(bgr, mask, params);
  if (!crop) return {{"crop", nullptr}, {"crop_reason", "the mask is empty: nothing to crop"}};
  nlohmann::json j = service::crop_geometry_json(crop->geometry);
  j["image"] = stem.string() + ".crop.png";
  j["mask"] = stem.string() + ".crop-mask.png";
  const std::vector<uint8_t> image = encode_png(crop->image), mask_png = encode_png(crop->mask);
  write_output(j["image"].get<std::string>(), image.data(), image.size(), inputs);
  write_output(j["mask"].get<std::string>(), mask_png.data(), mask_png.size(), inputs);
  return {{"crop", j}};
}

void progress(size_t done, size_t total, const std::string& name, size_t failed) {
  const int width = 30;
  int filled = total ? int(width * done / total) : width;
  std::cerr << "\r[" << std::string(size_t(filled), '#') << std::string(size_t(width - filled), ' ') << "] " << done
            << "/" << total;
  if (failed) std::cerr << " (" << failed << " failed)";
  std::cerr << " " << name.substr(0, 40) << "\033[K" << std::flush;
}

}  // namespace

void register_run(CLI::App& root, CommonOptions& common) {
  struct RunOptions {
    std::string prompt;
    std::vector<std::string> inputs;
    std::string out = "out";
    bool return_mask = false;
    std::string output;  // mask | annotated | cutout; empty = annotated (mask with --return-mask)
    bool json = false;
    bool quiet = false;
    std::shared_ptr<nlohmann::json> given = std::make_shared<nlohmann::json>(nlohmann::json::object());
    bool crop = false;
    CropParams crop_params;
  };
  auto opts = std::make_shared<RunOptions>();
  CLI::App* run = root.add_subcommand("run", "Mask images, folders or globs and write the results to --out");
  run->add_option("--prompt,-p", opts->prompt, "What to find, phrases separated by commas")->required();
  run->add_option("inputs", opts->inputs, "Image files, folders or glob patterns")->required();
  run->add_option("--out,-o", opts->out, "Output folder (created)")->capture_default_str();
  run->add_flag("--return-mask", opts->return_mask, "Write the mask PNG instead of the annotated image (--output mask)");
  run->add_option("--output", opts->output,
                  "What to write: mask (8-bit PNG, 255 = inpaint), annotated (the default; JPEG for JPEG input, "
                  "PNG otherwise) or cutout (RGBA PNG, the mask as alpha)")
      ->check(CLI::IsMember({"mask", "annotated", "cutout"}, CLI::ignore_case));
  run->add_flag("--json", opts->json,
                "Also write <name>.json with every instance (phrase, score, box, area, COCO RLE mask) and the "
                "union mask (RLE)");
  run->add_flag("--quiet,-q", opts->quiet, "No progress bar");
  add_crop_options(*run, opts->crop, opts->crop_params);
  add_common_options(*run, common);
  add_param_flags(*run, opts->given, {"prompt", "return_mask", "output"});
  run->callback([opts, &common] {
    if (opts->crop) validate(opts->crop_params);
    std::transform(opts->output.begin(), opts->output.end(), opts->output.begin(), ::tolower);
    if (opts->return_mask && !opts->output.empty() && opts->output != "mask")
      throw Error(ErrorCode::InvalidArgument, "--return-mask contradicts --output " + opts->output);
    if (split_prompt(opts->prompt).empty()) throw Error(ErrorCode::InvalidArgument, "--prompt is empty");
    nlohmann::json fields = *opts->given;
    fields["prompt"] = opts->prompt;
    fields["output"] = !opts->output.empty() ? opts->output : opts->return_mask ? "mask" : "annotated";
    const service::MaskRequest request = service::parse_mask_request(fields, service::Endpoint::Cli);
    std::vector<fs::path> files = expand_inputs(opts->inputs);
    if (files.empty()) throw Error(ErrorCode::InvalidArgument, "no input images found");
    fs::create_directories(opts->out);
    const std::set<FileId> inputs = file_ids(files);
    auto pipeline = load_pipeline(common);
    const bool bar = !opts->quiet && isatty(STDERR_FILENO);
    std::set<std::string> used_names;
    size_t failed = 0, done = 0;
    for (const auto& file : files) {
      if (bar) progress(done, files.size(), file.filename().string(), failed);
      try {
        auto started = std::chrono::steady_clock::now();
        service::MaskRequest one = request;
        one.upload = read_file(file);
        service::MaskAnswer answer = service::run_local(*pipeline, std::move(one));
        const MaskResult& r = answer.result;
        std::string stem = file.stem().string();
        for (int k = 2; used_names.count(stem); ++k) stem = file.stem().string() + "_" + std::to_string(k);
        used_names.insert(stem);
        const std::string ext = answer.content_type == "image/jpeg" ? ".jpg" : ".png";
        fs::path target = fs::path(opts->out) / (stem + ext);
        write_output(target, answer.body.data(), answer.body.size(), inputs);
        nlohmann::json crop_j = write_crop(opts->crop, opts->crop_params, answer.image.bgr, r.mask,
                                           fs::path(opts->out) / stem, inputs);
        if (opts->json) {
          nlohmann::json j = {{"file", file.string()}, {"output", target.string()}, {"width", r.width},
                              {"height", r.height}, {"phrases", r.phrases}, {"unmatched", r.unmatched},
                              {"instances", instances_json(r)}, {"mask", service::rle_encode(r.mask)}};
          if (opts->crop) j.update(crop_j);
          const std::string text = j.dump(2) + "\n";
          write_output(fs::path(opts->out) / (stem + ".json"), text.data(), text.size(), inputs);
        }
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
        if (!bar && !opts->quiet) {
          std::cerr << file.string() << " -> " << target.string() << " (" << r.instances.size() << " instances, "
                    << int(ms) << " ms)";
          if (!r.unmatched.empty()) {
            std::cerr << " unmatched:";
            for (auto& u : r.unmatched) std::cerr << " '" << u << "'";
          }
          std::cerr << "\n";
        }
      } catch (const std::exception& e) {
        ++failed;
        if (bar) std::cerr << "\r\033[K";
        std::cerr << "error: " << file.string() << ": " << e.what() << "\n";
      }
      ++done;
    }
    if (bar) { progress(done, files.size(), "", failed); std::cerr << "\n"; }
    std::cerr << done - failed << " of " << done << " images done" << (failed ? ", " + std::to_string(failed) + " failed" : "") << "\n";
    exit_code() = failed ? 1 : 0;
  });
}

}  // namespace maskmaker::cli
