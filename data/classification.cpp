#include "data/classification.h"

#include <algorithm>
#include <cstring>
#include <cctype>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/random/philox.h"
#include "data/file_util.h"

namespace strata::data {

namespace {

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t tab = line.find('\t', start);
    out.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
    if (tab == std::string::npos) return out;
    start = tab + 1;
  }
}

// Collapses runs of whitespace (newlines included) to one space.
std::string squeeze_spaces(const std::string& s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

// The corpus source of a document: its file name up to "__" (get_corpus.sh names documents
// <source>__<path>.txt), or the whole stem.
std::string source_of(const std::string& file) {
  std::string name = file.substr(file.find_last_of('/') + 1);
  const auto cut = name.find("__");
  return cut == std::string::npos ? name.substr(0, name.find('.')) : name.substr(0, cut);
}

// Sentences of a paragraph: cut after '.', '!' or '?' followed by a space and an upper-case letter.
std::vector<std::string> sentences(const std::string& paragraph) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t i = 0; i + 2 < paragraph.size(); ++i) {
    const char c = paragraph[i];
    if ((c == '.' || c == '!' || c == '?') && paragraph[i + 1] == ' ' &&
        std::isupper(static_cast<unsigned char>(paragraph[i + 2]))) {
      out.push_back(paragraph.substr(start, i + 1 - start));
      start = i + 2;
    }
  }
  if (start < paragraph.size()) out.push_back(paragraph.substr(start));
  return out;
}

bool is_prose(const std::string& sentence) {
  std::istringstream words(sentence);
  int64_t total = 0, alphabetic = 0;
  for (std::string w; words >> w;) {
    ++total;
    alphabetic += std::all_of(w.begin(), w.end(), [](char c) {
      return std::isalpha(static_cast<unsigned char>(c)) || c == ',' || c == '.' || c == '\'' ||
             c == ';' || c == ':' || c == '?' || c == '!';
    });
  }
  return total >= 4 && total <= 48 && alphabetic * 5 >= total * 4;
}

}  // namespace

std::vector<ClassificationExample> read_classification_tsv(const std::string& path) {
  std::istringstream in(read_file(path, "classification examples"));
  std::vector<ClassificationExample> out;
  int64_t line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    const auto fields = split_tabs(line);
    STRATA_CHECK(fields.size() == 2 || fields.size() == 3, path, ":", line_no, ": expected ",
                 "label<TAB>text or label<TAB>text_a<TAB>text_b, got ", fields.size(), " fields");
    ClassificationExample e;
    size_t used = 0;
    int label = -1;
    try {
      label = std::stoi(fields[0], &used);
    } catch (const std::exception&) {
      used = 0;
    }
    STRATA_CHECK(used == fields[0].size() && label >= 0, path, ":", line_no, ": the label '",
                 fields[0], "' is not a non-negative integer");
    e.label = label;
    e.text_a = fields[1];
    if (fields.size() == 3) e.text_b = fields[2];
    out.push_back(std::move(e));
  }
  STRATA_CHECK(!out.empty(), path, ": no examples");
  return out;
}

void write_classification_tsv(const std::string& path,
                              const std::vector<ClassificationExample>& examples) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    STRATA_CHECK(out.good(), "cannot write '", tmp, "'");
    for (const auto& e : examples) {
      out << e.label << '\t' << e.text_a;
      if (!e.text_b.empty()) out << '\t' << e.text_b;
      out << '\n';
    }
    STRATA_CHECK(out.good(), "writing '", tmp, "' failed (disk full?)");
  }
  std::rename(tmp.c_str(), path.c_str());
}

namespace {

// Consecutive pairs of prose sentences within a paragraph, in corpus order; `files` (when given)
// receives each pair's file.
std::vector<std::pair<std::string, std::string>> prose_pairs(const std::vector<std::string>& inputs,
                                                             std::vector<std::string>* files = nullptr) {
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const std::string& file : expand_inputs(inputs)) {
    std::istringstream text(read_file(file, "a corpus document"));
    std::string paragraph;
    auto flush = [&] {
      const auto s = sentences(squeeze_spaces(paragraph));
      for (size_t i = 0; i + 1 < s.size(); i += 2)
        if (is_prose(s[i]) && is_prose(s[i + 1])) {
          pairs.emplace_back(s[i], s[i + 1]);
          if (files) files->push_back(file);
        }
      paragraph.clear();
    };
    for (std::string line; std::getline(text, line);) {
      const bool blank = line.find_first_not_of(" \t\r") == std::string::npos;
      if (blank) {
        flush();
      } else {
        paragraph += line;
        paragraph += ' ';
      }
    }
    flush();
  }
  STRATA_CHECK(!pairs.empty(), "classification task: no paragraph with two prose sentences in ",
               inputs.empty() ? std::string("(no input)") : inputs[0]);
  return pairs;
}

}  // namespace

std::vector<ClassificationExample> sentence_order_examples(const std::vector<std::string>& inputs,
                                                           int64_t max_examples, uint64_t seed) {
  // All candidate pairs first, then an even subsample, so the examples cover every source.
  const auto pairs = prose_pairs(inputs);
  const int64_t n = std::min<int64_t>(max_examples, int64_t(pairs.size()));
  std::vector<ClassificationExample> out;
  out.reserve(size_t(n));
  const Philox rng(seed, RngStream::Objective, 0);
  for (int64_t i = 0; i < n; ++i) {
    const auto& [a, b] = pairs[size_t(i * int64_t(pairs.size()) / n)];
    ClassificationExample e;
    e.label = rng.uniform(uint64_t(i)) < 0.5 ? 1 : 0;
    e.text_a = e.label ? a : b;
    e.text_b = e.label ? b : a;
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<ClassificationExample> word_order_examples(const std::vector<std::string>& inputs,
                                                       int64_t max_examples, uint64_t seed) {
  const auto pairs = prose_pairs(inputs);
  const int64_t n = std::min<int64_t>(max_examples, int64_t(pairs.size()));
  std::vector<ClassificationExample> out;
  out.reserve(size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    const Philox rng(seed, RngStream::Objective, uint64_t(i));
    ClassificationExample e;
    e.text_a = pairs[size_t(i * int64_t(pairs.size()) / n)].first;
    e.label = rng.uniform(0) < 0.5 ? 1 : 0;
    if (e.label == 0) {
      std::istringstream in(e.text_a);
      std::vector<std::string> words;
      for (std::string w; in >> w;) words.push_back(w);
      // The final punctuation stays at the end, so only the order of the words tells.
      std::string end_mark;
      while (!words.back().empty() && std::strchr(".!?", words.back().back())) {
        end_mark.insert(end_mark.begin(), words.back().back());
        words.back().pop_back();
      }
      if (words.back().empty()) words.pop_back();
      const std::vector<std::string> original = words;
      // Fisher-Yates with counter-based draws; retried with later counters until the order
      // changes (a sentence of 4+ distinct words almost never needs a retry).
      for (uint64_t round = 0; words == original && round < 8; ++round)
        for (size_t k = words.size() - 1; k > 0; --k) {
          const auto j = size_t(rng.uniform(1 + round * 64 + k) * float(k + 1)) % (k + 1);
          std::swap(words[k], words[j]);
        }
      e.text_a.clear();
      for (const auto& w : words) e.text_a += (e.text_a.empty() ? "" : " ") + w;
      e.text_a += end_mark;
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<std::string> source_names(const std::vector<std::string>& inputs) {
  std::set<std::string> names;
  for (const std::string& file : expand_inputs(inputs)) names.insert(source_of(file));
  return {names.begin(), names.end()};
}

std::vector<ClassificationExample> source_examples(const std::vector<std::string>& inputs,
                                                   const std::vector<std::string>& sources,
                                                   int64_t max_examples) {
  std::vector<std::string> files;
  const auto pairs = prose_pairs(inputs, &files);
  std::vector<std::vector<std::string>> by_source(sources.size());
  for (size_t i = 0; i < pairs.size(); ++i) {
    const auto it = std::find(sources.begin(), sources.end(), source_of(files[i]));
    STRATA_CHECK(it != sources.end(), "source task: '", files[i], "' is from source '",
                 source_of(files[i]), "', which the label set does not list");
    by_source[size_t(it - sources.begin())].push_back(pairs[i].first);
  }
  // Round robin over the sources, each one's sentences taken evenly spaced through its documents.
  std::vector<ClassificationExample> out;
  const int64_t per = max_examples / int64_t(sources.size());
  for (int64_t k = 0; k < per; ++k)
    for (size_t c = 0; c < sources.size(); ++c) {
      const auto& pool = by_source[c];
      if (int64_t(pool.size()) <= k) continue;
      const auto n = std::min<int64_t>(per, int64_t(pool.size()));
      out.push_back({int32_t(c), pool[size_t(k * int64_t(pool.size()) / n)], ""});
    }
  STRATA_CHECK(!out.empty(), "source task: no prose sentence in the inputs");
  return out;
}

std::vector<int32_t> encode_classification(const Tokenizer& tokenizer,
                                           const ClassificationExample& example, int64_t seq_len,
                                           int64_t* valid) {
  const SpecialIds& sp = tokenizer.special();
  STRATA_CHECK(sp.cls >= 0 && sp.sep >= 0 && sp.pad >= 0, "classification: the tokenizer has no ",
               "[CLS]/[SEP]/PAD; use a bert-style tokenizer");
  std::vector<int32_t> a = tokenizer.encode(example.text_a);
  std::vector<int32_t> b = example.text_b.empty() ? std::vector<int32_t>{}
                                                  : tokenizer.encode(example.text_b);
  const int64_t specials = example.text_b.empty() ? 2 : 3;
  STRATA_CHECK(seq_len > specials, "classification: seq_len ", seq_len, " leaves no room for text");
  while (int64_t(a.size() + b.size()) + specials > seq_len) (a.size() >= b.size() ? a : b).pop_back();
  std::vector<int32_t> ids;
  ids.reserve(size_t(seq_len));
  ids.push_back(sp.cls);
  ids.insert(ids.end(), a.begin(), a.end());
  ids.push_back(sp.sep);
  if (!example.text_b.empty()) {
    ids.insert(ids.end(), b.begin(), b.end());
    ids.push_back(sp.sep);
  }
  if (valid) *valid = int64_t(ids.size());
  ids.resize(size_t(seq_len), sp.pad);
  return ids;
}

}  // namespace strata::data
