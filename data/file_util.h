#pragma once
// Input discovery and streaming text reading shared by `strata prepare` and tokenizer training.
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "data/utf8.h"

namespace strata::data {

// Whole file as bytes; a missing or unreadable file is an error naming the path and `what` for.
std::string read_file(const std::string& path, const std::string& what);

// Expands files and directories (recursively, sorted so the order is reproducible) into the list
// of regular files. A missing path is an error naming it; hidden files are skipped.
std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs);

bool is_jsonl(const std::string& path);

// Streams documents from files: a plain-text file is one document, a .jsonl/.json file holds one
// document per line in its "text" field. Text comes out in pieces of about `chunk_bytes`, cut
// after a newline where possible, with invalid UTF-8 replaced by U+FFFD and counted. Memory is
// bounded by the chunk size (and the longest JSONL line).
class TextInput {
 public:
  explicit TextInput(std::vector<std::string> files, size_t chunk_bytes = size_t(1) << 20);

  // The next piece; `starts_document` is set when it begins a new document. False at the end.
  bool next(std::string& piece, bool& starts_document);

  uint64_t total_bytes() const { return total_bytes_; }
  uint64_t bytes_read() const { return bytes_read_; }
  uint64_t invalid_utf8() const { return invalid_utf8_; }
  uint64_t bad_json_lines() const { return bad_json_lines_; }
  uint64_t empty_files() const { return empty_files_; }
  // Human-readable warnings (first few bad lines, empty files), in input order.
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  bool open_next_file();
  bool next_plain(std::string& piece, bool& starts_document);
  bool next_jsonl(std::string& piece, bool& starts_document);
  void warn(std::string message);

  std::vector<std::string> files_;
  size_t chunk_bytes_;
  size_t file_index_ = 0;
  std::ifstream in_;
  bool jsonl_ = false;
  bool file_open_ = false;
  bool file_started_ = false;
  uint64_t line_number_ = 0;
  std::string carry_;
  std::string raw_;
  Utf8Repair repair_;
  uint64_t total_bytes_ = 0, bytes_read_ = 0, invalid_utf8_ = 0, bad_json_lines_ = 0,
           empty_files_ = 0, file_bytes_ = 0;
  std::vector<std::string> warnings_;
};

}  // namespace strata::data
