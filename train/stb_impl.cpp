// The one translation unit that compiles stb_image and stb_image_write (both
// header-only libraries); everyone else includes the headers for declarations.
// Their own warnings are not ours to fix, so they are silenced here only.
//
// Only the decoders a user means are compiled: PNG, JPEG and BMP. The others
// (PIC, PSD, HDR, TGA, PNM, GIF) are the least hardened parts of stb_image,
// and stb_image picks a decoder from the content, not the file name: a
// truncated PIC named x.png crashed `predict`. train/image.cpp checks magic
// bytes, completeness and size before any of these decoders runs.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_MAX_DIMENSIONS 16384  // = image::kMaxSide
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image.h>
#include <stb_image_write.h>
#pragma GCC diagnostic pop
