// The roofline timings as a program of their own (benchmarks only; bench/native/tools.js builds
// it against the LibTorch the addon uses). Prints one JSON line.
//   roofline peak <threads> <seconds per run> <reps>
//   roofline sgemm <threads> <n> <reps>
//   roofline model <threads> <height> <width> <batch> <backward 0|1> <reps> <growth> <blocks a,b,c>
//            <init features> <bn size> <compression> <classes> <in channels> <stem cifar|imagenet>
//   roofline flops  (the same arguments as model: its forward FLOPs per image, nothing timed)
#include "roofline.h"

#include <ATen/Parallel.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

using namespace densetorch;

namespace {

std::vector<int64_t> parse_blocks(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');) out.push_back(std::stoll(part));
  return out;
}

int usage() {
  std::fprintf(stderr, "usage: roofline peak THREADS SECONDS REPS | roofline sgemm THREADS N REPS | roofline model THREADS H W BATCH BACKWARD REPS GROWTH "
                       "BLOCKS INIT BN_SIZE COMPRESSION CLASSES IN_CHANNELS STEM | roofline flops (as model)\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  const std::string what = argv[1];
  at::set_num_threads(std::atoi(argv[2]));
  if (what == "peak" && argc == 5) {
    const FmaPeak peak = fma_peak(std::atof(argv[3]), std::atoi(argv[4]));
    std::printf("{\"gflops\": %.9g, \"isa\": \"%s\"}\n", peak.gflops, peak.isa);
    return 0;
  }
  if (what == "sgemm" && argc == 5) {
    std::printf("{\"seconds\": %.9g}\n", time_matmul(std::atoll(argv[3]), std::atoi(argv[4])));
    return 0;
  }
  if ((what != "model" && what != "flops") || argc != 16) return usage();
  const int64_t height = std::atoll(argv[3]), width = std::atoll(argv[4]), batch = std::atoll(argv[5]);
  const bool backward = std::string(argv[6]) == "1";
  const int reps = std::atoi(argv[7]);
  DenseNetConfig c;
  c.growth_rate = std::atoll(argv[8]);
  c.block_config = parse_blocks(argv[9]);
  c.num_init_features = std::atoll(argv[10]);
  c.bn_size = std::atoll(argv[11]);
  c.compression = std::atof(argv[12]);
  c.num_classes = std::atoll(argv[13]);
  c.in_channels = std::atoll(argv[14]);
  c.stem = std::string(argv[15]) == "cifar" ? Stem::kCifar : Stem::kImageNet;
  const auto shapes = conv_shapes(c, height, width);
  if (what == "flops") {  // the FLOPs alone, nothing timed
    std::printf("{\"forwardFlopsPerImage\": %.9g, \"convolutions\": %zu}\n", forward_flops(shapes), shapes.size());
    return 0;
  }
  std::printf("{\"forwardFlopsPerImage\": %.9g, \"floorSeconds\": %.9g, \"convolutions\": %zu}\n", forward_flops(shapes),
              time_convolutions(shapes, batch, backward, reps), shapes.size());
  return 0;
}
