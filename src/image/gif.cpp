// GIF through giflib (stb_image rejects some valid LZW streams with "too many codes").
#include "image/gif.hpp"

#include <algorithm>
#include <cstring>

#include <gif_lib.h>

#include "maskmaker/maskmaker.hpp"

namespace maskmaker {
namespace {

struct Reader {
  std::span<const uint8_t> bytes;
  size_t pos = 0;
};

int read_bytes(GifFileType* gif, GifByteType* out, int n) {
  auto* r = static_cast<Reader*>(gif->UserData);
  size_t take = std::min<size_t>(size_t(std::max(n, 0)), r->bytes.size() - r->pos);
  std::memcpy(out, r->bytes.data() + r->pos, take);
  r->pos += take;
  return int(take);
}

}  // namespace

std::optional<cv::Size> gif_screen_size(std::span<const uint8_t> bytes) {
  Reader reader{bytes};
  int error = 0;
  GifFileType* gif = DGifOpen(&reader, read_bytes, &error);
  if (!gif) return std::nullopt;
  const cv::Size size(gif->SWidth, gif->SHeight);
  DGifCloseFile(gif, &error);
  return size;
}

cv::Mat decode_gif_first_frame(std::span<const uint8_t> bytes, int64_t max_pixels) {
  Reader reader{bytes};
  int error = 0;
  GifFileType* gif = DGifOpen(&reader, read_bytes, &error);
  if (!gif) return {};
  struct Closer { GifFileType* g; ~Closer() { int e; DGifCloseFile(g, &e); } } closer{gif};
  if (gif->SWidth <= 0 || gif->SHeight <= 0) return {};

  int transparent = -1;
  GifRecordType type;
  do {
    if (DGifGetRecordType(gif, &type) == GIF_ERROR) return {};
    if (type == EXTENSION_RECORD_TYPE) {
      int code = 0;
      GifByteType* ext = nullptr;
      if (DGifGetExtension(gif, &code, &ext) == GIF_ERROR) return {};
      if (code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] >= 4 && (ext[1] & 1)) transparent = ext[4];
      while (ext) {
        if (DGifGetExtensionNext(gif, &ext) == GIF_ERROR) return {};
      }
    } else if (type == IMAGE_DESC_RECORD_TYPE) {
      if (DGifGetImageDesc(gif) == GIF_ERROR) return {};
      const GifImageDesc& d = gif->Image;
      const ColorMapObject* map = d.ColorMap ? d.ColorMap : gif->SColorMap;
      if (!map || d.Width <= 0 || d.Height <= 0) return {};
      // A 16x16 screen may declare a 65535x65535 frame: a minute of LZW from 3 MB, past the header-size check.
      const int64_t frame_pixels = int64_t(d.Width) * d.Height;
      if (frame_pixels > max_pixels)
        throw Error(ErrorCode::ImageTooLarge,
                    "the gif's first frame is " + std::to_string(d.Width) + "x" + std::to_string(d.Height) + " = " +
                        std::to_string(frame_pixels) + " pixels, over the limit of " + std::to_string(max_pixels),
                    "image");
      cv::Mat canvas(gif->SHeight, gif->SWidth, CV_8UC3, cv::Scalar(0, 0, 0));
      if (gif->SColorMap && gif->SBackGroundColor < gif->SColorMap->ColorCount) {
        const GifColorType& c = gif->SColorMap->Colors[gif->SBackGroundColor];
        canvas.setTo(cv::Scalar(c.Blue, c.Green, c.Red));
      }
      std::vector<GifPixelType> line(size_t(d.Width));
      std::vector<int> rows;
      if (d.Interlace) {
        for (int start : {0, 4, 2, 1})
          for (int y = start; y < d.Height; y += (start == 0 ? 8 : start == 4 ? 8 : start == 2 ? 4 : 2)) rows.push_back(y);
      } else {
        for (int y = 0; y < d.Height; ++y) rows.push_back(y);
      }
      for (int y : rows) {
        int cy = d.Top + y;
        if (!d.Interlace && cy >= canvas.rows) break;  // the rest of the frame lies below the screen
        if (DGifGetLine(gif, line.data(), d.Width) == GIF_ERROR) return {};
        if (cy < 0 || cy >= canvas.rows) continue;
        auto* out = canvas.ptr<cv::Vec3b>(cy);
        for (int x = 0; x < d.Width; ++x) {
          int cx = d.Left + x;
          if (cx < 0 || cx >= canvas.cols || line[size_t(x)] == transparent) continue;
          int idx = std::min<int>(line[size_t(x)], map->ColorCount - 1);
          const GifColorType& c = map->Colors[idx];
          out[cx] = cv::Vec3b(c.Blue, c.Green, c.Red);
        }
      }
      return canvas;
    }
  } while (type != TERMINATE_RECORD_TYPE);
  return {};
}

}  // namespace maskmaker
