#include "data/tokenizer.h"
#include "data/tokenizer_backends.h"

#include <charconv>
#include <map>

#include "core/error.h"
#include "data/file_util.h"
#include "data/hash.h"

namespace strata::data {

namespace {
constexpr std::string_view kMagic = "strata-tokenizer 1\n";
}

std::string byte_tokenizer_file() {
  return std::string(kMagic) + "kind=bytes\nstyle=bytes\nsentinels=0\npayload=0\n\n";
}

std::unique_ptr<Tokenizer> load_tokenizer_bytes(std::string bytes, const std::string& what) {
  if (bytes.compare(0, kMagic.size(), kMagic) != 0) {
    STRATA_CHECK(!bytes.empty(), "tokenizer: ", what, " is empty");
    // A raw SentencePiece model; its kind and style are read from the model itself.
    return make_sentencepiece_tokenizer("", "", 100, bytes, bytes, what);
  }
  std::map<std::string, std::string> header;
  size_t pos = kMagic.size();
  while (true) {
    const size_t nl = bytes.find('\n', pos);
    STRATA_CHECK(nl != std::string::npos, "tokenizer: ", what, ": truncated header");
    if (nl == pos) {
      pos = nl + 1;
      break;
    }
    const std::string line = bytes.substr(pos, nl - pos);
    const size_t eq = line.find('=');
    STRATA_CHECK(eq != std::string::npos, "tokenizer: ", what, ": bad header line '", line, "'");
    header[line.substr(0, eq)] = line.substr(eq + 1);
    pos = nl + 1;
  }
  auto number = [&](const std::string& key) {
    const std::string& v = header[key];
    int64_t x = -1;
    std::from_chars(v.data(), v.data() + v.size(), x);
    STRATA_CHECK(x >= 0, "tokenizer: ", what, ": bad or missing '", key, "' in header");
    return x;
  };
  const std::string kind = header["kind"];
  const int64_t payload = number("payload");
  STRATA_CHECK(int64_t(bytes.size() - pos) == payload, "tokenizer: ", what, ": payload is ",
               bytes.size() - pos, " bytes, header says ", payload, " (truncated file?)");
  if (kind == "bytes") return make_byte_tokenizer(bytes);
  STRATA_CHECK(kind == "unigram" || kind == "bpe", "tokenizer: ", what, ": unknown kind '", kind,
               "', expected unigram, bpe or bytes");
  return make_sentencepiece_tokenizer(kind, header["style"], int32_t(number("sentinels")),
                                      bytes.substr(pos), bytes, what);
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  return load_tokenizer_bytes(read_file(path, "tokenizer"), path);
}

// --- bytes -------------------------------------------------------------------------------------

namespace {
class ByteTokenizer final : public Tokenizer {
 public:
  explicit ByteTokenizer(const std::string& file_bytes) {
    special_.pad = kBytePad;
    special_.eos = kByteEos;
    special_.bos = kByteBos;
    special_.mask = kByteMask;
    fingerprint_ = "bytes:" + Hasher64::hex(hash64(file_bytes));
  }
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids(text.size());
    for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
    return ids;
  }
  std::string decode(std::span<const int32_t> ids) const override {
    std::string s;
    s.reserve(ids.size());
    for (int32_t id : ids)
      if (id >= 0 && id < 256) s.push_back(char(id));
    return s;
  }
  int32_t vocab_size() const override { return kByteVocab; }
  std::string_view kind() const override { return "bytes"; }
};
}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer(const std::string& file_bytes) {
  return std::make_unique<ByteTokenizer>(file_bytes);
}

}  // namespace strata::data
