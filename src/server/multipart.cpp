#include "server/multipart.hpp"

#include <algorithm>
#include <cctype>
#include <set>

#include "maskmaker/maskmaker.hpp"
#include "runtime/ascii.hpp"
#include "server/http_server.hpp"
#include "service/request.hpp"

namespace maskmaker::server {
namespace {

using nlohmann::json;

// Every field of the three endpoints' forms: the parameter table's (maskmaker/params.hpp).
bool known_field(std::string_view name) { return find_param(name) != nullptr; }

[[noreturn]] void bad(const std::string& message, const std::string& field = "multipart") {
  throw Error(ErrorCode::InvalidArgument, message, field);
}

// A parameter of a header value (`name="x"` in `form-data; name="x"; filename="y"`): quoted or a token.
bool header_param(std::string_view value, std::string_view key, std::string& out) {
  size_t i = value.find(';');
  while (i != std::string_view::npos) {
    std::string_view rest = rt::trim_blanks(value.substr(i + 1));
    size_t eq = rest.find('=');
    if (eq == std::string_view::npos) return false;
    if (rt::ascii_lower(rt::trim_blanks(rest.substr(0, eq))) == key) {
      std::string_view v = rt::trim_blanks(rest.substr(eq + 1));
      out.clear();
      if (!v.empty() && v[0] == '"') {
        for (size_t k = 1; k < v.size(); ++k) {
          if (v[k] == '\\' && k + 1 < v.size()) out += v[++k];
          else if (v[k] == '"') return true;
          else out += v[k];
        }
        return true;
      }
      size_t end = v.find(';');
      out = std::string(rt::trim_blanks(v.substr(0, end)));
      return true;
    }
    // next parameter: skip a quoted value that may hold ';'
    size_t k = i + 1;
    bool quoted = false;
    for (; k < value.size(); ++k) {
      if (value[k] == '"') quoted = !quoted;
      else if (value[k] == '\\' && quoted) ++k;
      else if (value[k] == ';' && !quoted) break;
    }
    i = k < value.size() ? k : std::string_view::npos;
  }
  return false;
}

}  // namespace

std::multimap<std::string, FormPart> parse_multipart(std::string_view body, std::string_view content_type,
                                                     const MultipartLimits& limits) {
  std::string boundary;
  if (!header_param(content_type, "boundary", boundary) || boundary.empty())
    bad("multipart/form-data without a boundary parameter in its Content-Type", "Content-Type");
  if (boundary.size() > 70) bad("multipart boundary is longer than 70 characters", "Content-Type");
  const std::string delimiter = "--" + boundary;
  const std::string next_delimiter = "\r\n" + delimiter;

  std::multimap<std::string, FormPart> parts;
  size_t pos;
  if (body.substr(0, delimiter.size()) == delimiter) pos = delimiter.size();
  else if (size_t d = body.find(next_delimiter); d != std::string_view::npos) pos = d + next_delimiter.size();
  else bad("multipart body has no boundary line");
  size_t count = 0;
  for (;;) {
    if (body.substr(pos, 2) == "--") break;  // the closing delimiter
    while (pos < body.size() && (body[pos] == ' ' || body[pos] == '\t')) ++pos;
    if (body.substr(pos, 2) != "\r\n") bad("multipart body is malformed after a boundary line");
    pos += 2;
    if (++count > limits.max_parts)
      bad("multipart form has more than " + std::to_string(limits.max_parts) + " parts");
    size_t header_end = body.find("\r\n\r\n", pos);
    size_t header_len = header_end == std::string_view::npos ? body.size() - pos : header_end - pos;
    if (body.substr(pos, 2) == "\r\n") { header_end = pos; header_len = 0; }  // a part without headers
    if (header_len > limits.max_part_header_bytes)
      bad("a multipart part's headers are longer than " + std::to_string(limits.max_part_header_bytes) + " bytes");
    if (header_end == std::string_view::npos) bad("multipart body is truncated inside a part's headers");
    std::string_view headers = body.substr(pos, header_len);
    pos = header_end + (header_len == 0 ? 2 : 4);
    if (!is_valid_utf8(headers)) bad("a multipart part's headers are not valid UTF-8");

    FormPart part;
    bool disposition = false;
    size_t line_start = 0;
    while (line_start < headers.size()) {
      size_t line_end = headers.find("\r\n", line_start);
      if (line_end == std::string_view::npos) line_end = headers.size();
      std::string_view line = headers.substr(line_start, line_end - line_start);
      line_start = line_end + 2;
      size_t colon = line.find(':');
      if (colon == std::string_view::npos) bad("a multipart part has a malformed header line");
      std::string name = rt::ascii_lower(rt::trim_blanks(line.substr(0, colon)));
      std::string_view value = rt::trim_blanks(line.substr(colon + 1));
      if (name == "content-disposition") {
        if (rt::ascii_lower(value.substr(0, 9)) != "form-data") bad("a multipart part is not form-data");
        if (!header_param(value, "name", part.name)) bad("a multipart part has no name");
        header_param(value, "filename", part.filename);
        disposition = true;
      } else if (name == "content-type") {
        part.content_type = rt::ascii_lower(value);
      }
    }
    if (!disposition || part.name.empty()) bad("a multipart part has no Content-Disposition name");

    size_t end = body.find(next_delimiter, pos);
    if (end == std::string_view::npos) bad("multipart body is truncated (no closing boundary)");
    part.content = std::string(body.substr(pos, end - pos));
    pos = end + next_delimiter.size();

    if (!known_field(part.name))
      bad("unknown form field '" + part.name + "' (see /openapi.json for the fields)", part.name);
    if (parts.count(part.name)) bad("form field " + part.name + " is given more than once", part.name);
    std::string key = part.name;
    parts.emplace(std::move(key), std::move(part));
  }
  return parts;
}

std::vector<service::FormField> form_fields(const std::multimap<std::string, FormPart>& parts,
                                           std::vector<uint8_t>& image_bytes) {
  std::vector<service::FormField> fields;
  for (const auto& [name, part] : parts) {
    if (name == "image" && (!part.filename.empty() || part.content_type.rfind("image/", 0) == 0)) {
      image_bytes.assign(part.content.begin(), part.content.end());
      continue;
    }
    fields.push_back({name, part.content});
  }
  return fields;
}

}  // namespace maskmaker::server
