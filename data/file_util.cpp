#include "data/file_util.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace strata::data {
namespace fs = std::filesystem;

std::string read_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  STRATA_CHECK(in.good(), what, ": cannot open '", path, "' (",
               fs::exists(path) ? "not readable" : "no such file", ")");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> files;
  for (const auto& input : inputs) {
    std::error_code ec;
    const auto status = fs::status(input, ec);
    STRATA_CHECK(!ec && fs::exists(status), "input: no such file or directory: '", input, "'");
    if (fs::is_directory(status)) {
      std::vector<std::string> found;
      for (auto it = fs::recursive_directory_iterator(input);
           it != fs::recursive_directory_iterator(); ++it) {
        const std::string name = it->path().filename().string();
        if (!name.empty() && name[0] == '.') {
          if (it->is_directory()) it.disable_recursion_pending();
          continue;
        }
        if (it->is_regular_file()) found.push_back(it->path().string());
      }
      std::sort(found.begin(), found.end());
      STRATA_CHECK(!found.empty(), "input: directory '", input, "' holds no files");
      files.insert(files.end(), found.begin(), found.end());
    } else {
      files.push_back(input);
    }
  }
  return files;
}

bool is_jsonl(const std::string& path) {
  const std::string ext = fs::path(path).extension().string();
  return ext == ".jsonl" || ext == ".json" || ext == ".ndjson";
}

TextInput::TextInput(std::vector<std::string> files, size_t chunk_bytes)
    : files_(std::move(files)), chunk_bytes_(std::max<size_t>(chunk_bytes, 16)) {
  for (const auto& f : files_) {
    std::error_code ec;
    const auto size = fs::file_size(f, ec);
    STRATA_CHECK(!ec, "input: cannot read '", f, "': ", ec.message());
    total_bytes_ += size;
  }
}

void TextInput::warn(std::string message) {
  if (warnings_.size() < 20) warnings_.push_back(std::move(message));
}

bool TextInput::open_next_file() {
  while (file_index_ < files_.size()) {
    const std::string& path = files_[file_index_++];
    in_ = std::ifstream(path, std::ios::binary);
    STRATA_CHECK(in_.good(), "input: cannot open '", path, "'");
    std::error_code ec;
    file_bytes_ = fs::file_size(path, ec);
    if (file_bytes_ == 0) {
      ++empty_files_;
      warn("skipped empty file '" + path + "'");
      continue;
    }
    jsonl_ = is_jsonl(path);
    file_open_ = true;
    file_started_ = false;
    line_number_ = 0;
    carry_.clear();
    return true;
  }
  return false;
}

bool TextInput::next(std::string& piece, bool& starts_document) {
  while (true) {
    if (!file_open_ && !open_next_file()) return false;
    const bool got =
        jsonl_ ? next_jsonl(piece, starts_document) : next_plain(piece, starts_document);
    if (got) return true;
    file_open_ = false;
  }
}

bool TextInput::next_plain(std::string& piece, bool& starts_document) {
  piece.clear();
  while (true) {
    raw_.resize(chunk_bytes_);
    in_.read(raw_.data(), std::streamsize(chunk_bytes_));
    raw_.resize(size_t(in_.gcount()));
    bytes_read_ += raw_.size();
    const bool at_end = raw_.size() < chunk_bytes_;
    const uint64_t before = repair_.replaced();
    repair_.feed(raw_, carry_);
    if (at_end) repair_.finish(carry_);
    invalid_utf8_ += repair_.replaced() - before;
    size_t cut = carry_.size();
    if (!at_end) {
      const size_t nl = carry_.rfind('\n');
      // Cut after the last newline so a tokenizer never sees half a word; a file without
      // newlines is cut where the chunk ends (the repairer has already held back half a character).
      if (nl != std::string::npos) cut = nl + 1;
    }
    if (cut == 0 && !at_end) continue;
    piece.assign(carry_, 0, cut);
    carry_.erase(0, cut);
    starts_document = !file_started_;
    file_started_ = true;
    if (at_end && !carry_.empty()) {  // cannot happen: at_end cuts everything
      piece += carry_;
      carry_.clear();
    }
    if (piece.empty()) return false;
    if (at_end) {
      // Later calls see the closed stream and return false.
      in_.setstate(std::ios::eofbit);
    }
    return true;
  }
}

bool TextInput::next_jsonl(std::string& piece, bool& starts_document) {
  std::string line;
  while (std::getline(in_, line)) {
    ++line_number_;
    bytes_read_ += line.size() + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    uint64_t replaced = 0;
    std::string clean = repair_utf8(line, &replaced);
    invalid_utf8_ += replaced;
    const std::string where = files_[file_index_ - 1] + ":" + std::to_string(line_number_);
    auto doc = nlohmann::json::parse(clean, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object()) {
      ++bad_json_lines_;
      warn("skipped " + where + ": not a JSON object");
      continue;
    }
    auto it = doc.find("text");
    if (it == doc.end() || !it->is_string()) {
      ++bad_json_lines_;
      warn("skipped " + where + ": no string field \"text\"");
      continue;
    }
    piece = it->get<std::string>();
    if (piece.empty()) continue;
    starts_document = true;
    return true;
  }
  bytes_read_ = std::min(bytes_read_, total_bytes_);
  return false;
}

}  // namespace strata::data
