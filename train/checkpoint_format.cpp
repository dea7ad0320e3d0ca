#include "train/checkpoint_format.h"

#include <bit>
#include <optional>
#include <sstream>
#include <string_view>
#include <utility>

#include "train/checkpoint.h"
#include "train/checkpoint_dir.h"
#include "train/checksum.h"

namespace strata::train::detail {
namespace fs = std::filesystem;

namespace {

// Attributes of /train that the format itself owns.
const char* const kReserved[] = {"format_version", "manifest", "attrs_checksum", "checksum"};

// The canonical bytes behind attrs_checksum: the manifest, then each value (doubles by bit
// pattern, so the hash does not depend on printing precision).
std::string attr_bytes(const std::string& manifest, const std::vector<Attr>& attrs,
                       const io::H5File& f) {
  std::string out = manifest;
  for (const Attr& a : attrs) {
    out += '\n';
    out += a.key;
    out += '=';
    if (a.type == "int") {
      out += std::to_string(f.attr_int(kTrain, a.key));
    } else if (a.type == "double") {
      out += std::to_string(std::bit_cast<uint64_t>(f.attr_double(kTrain, a.key)));
    } else {
      const std::string v = f.attr_string(kTrain, a.key);
      out += std::to_string(v.size()) + ':' + v;
    }
  }
  return out;
}

}  // namespace

void check_name(const char* who, const char* what, const std::string& name) {
  STRATA_CHECK(!name.empty() && name != "." && name != "..", who, ": ", what, " name '", name,
               "' is not allowed");
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    STRATA_CHECK(ok, who, ": ", what, " name '", name, "' contains '", c,
                 "'; allowed are letters, digits, '_', '.' and '-'");
  }
}

Tensor on_host(const Tensor& t) {
  return t.device().is_cpu() ? t : t.detach().to(Device::cpu());
}

uint64_t tensor_hash(const Tensor& t) {
  const Tensor c = on_host(t).detach().contiguous();
  return mix64(c.raw_data(), size_t(c.numel()) * c.element_size());
}

AttrTypes check_trainer_state(const char* who, int64_t step, const TrainerState& s) {
  AttrTypes types;
  auto add_key = [&](const std::string& key, const char* type) {
    check_name(who, "trainer-state", key);
    for (const char* r : kReserved)
      STRATA_CHECK(key != r, who, ": trainer-state key '", key, "' is reserved");
    STRATA_CHECK(types.emplace(key, type).second, who, ": trainer-state key '", key,
                 "' is given as both ", types[key], " and ", type);
  };
  for (const auto& [k, v] : s.ints)
    if (k != "step") add_key(k, "int");
  add_key("step", "int");
  for (const auto& [k, v] : s.doubles) add_key(k, "double");
  for (const auto& [k, v] : s.strings) add_key(k, "string");
  if (auto it = s.ints.find("step"); it != s.ints.end())
    STRATA_CHECK(it->second == step, who, ": state.ints[\"step\"] is ", it->second,
                 " but the checkpoint is for step ", step);
  return types;
}

void write_train(io::H5File& f, int64_t step, const TrainerState& s, const AttrTypes& types,
                 std::string manifest) {
  Tensor version = Tensor::empty({}, DType::i64);
  version.data<int64_t>()[0] = kCheckpointFormatVersion;
  f.write(kTrain, version);
  f.set_attr(kTrain, "checksum", checksum_string(tensor_hash(version)));
  f.set_attr(kTrain, "format_version", kCheckpointFormatVersion);
  std::vector<Attr> attrs;
  for (const auto& [key, type] : types) {
    if (type == "int")
      f.set_attr(kTrain, key, key == "step" ? step : s.ints.at(key));
    else if (type == "double")
      f.set_attr(kTrain, key, s.doubles.at(key));
    else
      f.set_attr(kTrain, key, s.strings.at(key));
    attrs.push_back({type, key});
    manifest += type + " " + key + "\n";
  }
  f.set_attr(kTrain, "manifest", manifest);
  const std::string bytes = attr_bytes(manifest, attrs, f);
  f.set_attr(kTrain, "attrs_checksum", checksum_string(mix64(bytes.data(), bytes.size())));
}

Opened open_verified(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(dir, "no such directory");
  if (!has_done(dir))
    fail(dir,
         "no DONE marker: the save was interrupted (or the directory is not a checkpoint); "
         "resume from an earlier checkpoint");
  const fs::path file = dir / kStateFile;
  if (!fs::is_regular_file(file, ec)) fail(dir, "missing ", kStateFile);
  std::optional<io::H5File> f;
  try {
    f.emplace(io::H5File::open(file.string(), io::H5File::Mode::Read));
  } catch (const std::exception& e) {
    fail(dir, e.what(), kCorruptHint);
  }
  try {
    if (!f->exists(kTrain) || !f->has_attr(kTrain, "format_version"))
      fail(dir, "no /train format_version: not a Strata checkpoint, or", kCorruptHint);
    const int64_t version = f->attr_int(kTrain, "format_version");
    if (version != kCheckpointFormatVersion)
      fail(dir, "format version ", version, " is not supported (this build reads version ",
           kCheckpointFormatVersion, "); use a Strata release that matches the file");
    Opened o{std::move(*f), {}, {}};
    const std::string manifest = o.file.attr_string(kTrain, "manifest");
    std::istringstream in(manifest);
    std::string type, name;
    while (in >> type >> name) {
      if (type == "tensor")
        o.tensors.push_back(name);
      else if (type == "int" || type == "double" || type == "string")
        o.attrs.push_back({type, name});
      else
        fail(dir, "unknown manifest entry '", type, " ", name, "'", kCorruptHint);
    }
    const std::string bytes = attr_bytes(manifest, o.attrs, o.file);
    const auto want = parse_checksum(o.file.attr_string(kTrain, "attrs_checksum"));
    if (!want || *want != mix64(bytes.data(), bytes.size()))
      fail(dir, "checksum mismatch in the /train attributes", kCorruptHint);
    return o;
  } catch (const Error& e) {
    if (std::string_view(e.what()).rfind("checkpoint '", 0) == 0) throw;
    fail(dir, e.what(), kCorruptHint);
  }
}

Tensor read_verified(const fs::path& dir, const io::H5File& f, const std::string& path) {
  Tensor t;
  std::string stored;
  try {
    t = f.read(path);
    stored = f.attr_string(path, "checksum");
  } catch (const std::exception& e) {
    fail(dir, "cannot read ", path, " (", e.what(), ")", kCorruptHint);
  }
  const auto want = parse_checksum(stored);
  if (!want) fail(dir, "unreadable checksum '", stored, "' on ", path, kCorruptHint);
  if (*want != tensor_hash(t)) fail(dir, "checksum mismatch in ", path, kCorruptHint);
  return t;
}

}  // namespace strata::train::detail
