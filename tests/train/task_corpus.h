#pragma once
// The generated corpus the BERT and T5 training tests use, in one process (tasks_test.cpp) and in
// every parallel layout (tests/parallel/train_parallel_mpitest.cpp): paragraphs of two varied
// sentences, "X did Y. Then Z did W.", in 12 training and 2 validation documents, with small
// bert- and t5-style unigram tokenizers and the shards they prepare.
#include <cctype>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>

#include "data/prepare.h"
#include "data/tokenizer.h"

namespace strata::train::fixtures {

// Empties `root` and writes root/text/{train,valid}/docN.txt.
inline void write_task_text(const std::filesystem::path& root) {
  namespace fs = std::filesystem;
  fs::remove_all(root);
  fs::create_directories(root / "text/train");
  fs::create_directories(root / "text/valid");
  const char* who[] = {"the cat",    "a dog",   "the old bird", "my small fish",
                       "the farmer", "a child", "the teacher",  "our neighbour"};
  const char* did[] = {" sat on ",   " ran to ",      " looked at ",
                       " slept by ", " walked past ", " painted "};
  const char* what[] = {"the mat",       "the door",       "a tall tree", "the river",
                        "the red house", "a quiet garden", "the bridge"};
  for (int d = 0; d < 14; ++d) {
    std::ofstream out(root / (d < 12 ? "text/train/" : "text/valid/") /
                      ("doc" + std::to_string(d) + ".txt"));
    // One paragraph per line.
    for (int i = 0; i < 80; ++i) {
      std::string first = who[(i + d) % 8];
      first[0] = char(std::toupper(first[0]));
      out << first << did[(i * 3 + d) % 6] << what[(i * 5 + d) % 7] << ". Then "
          << who[(i * 7 + d + 3) % 8] << did[(i + 2 * d) % 6] << what[(i + d) % 7] << ".\n\n";
    }
  }
}

// Trains a `style` ("bert" or "t5") unigram tokenizer on root/text/train into root/<style>.tok.
// Both vocabularies (48 and 84) divide by tensor-parallel degrees 2 and 4.
inline std::unique_ptr<data::Tokenizer> train_task_tokenizer(const std::filesystem::path& root,
                                                             const std::string& style) {
  data::TokenizerTrainOptions t;
  t.inputs = {(root / "text/train").string()};
  t.kind = "unigram";
  t.style = style;
  t.vocab = style == "bert" ? 48 : 84;
  t.sentinels = 40;
  t.threads = 1;
  t.out = (root / (style + ".tok")).string();
  return data::train_tokenizer(t);
}

// Prepares root/text/{train,valid} with `tokenizer` into shards root/<name>-{train,valid}.
inline void prepare_task_shards(const std::filesystem::path& root, const data::Tokenizer& tokenizer,
                                const std::string& name) {
  for (auto [in, out] : {std::pair{"text/train", "train"}, std::pair{"text/valid", "valid"}}) {
    data::PrepareOptions p;
    p.inputs = {(root / in).string()};
    p.out = (root / (name + "-" + out)).string();
    p.progress = false;
    data::prepare(p, tokenizer);
  }
}

}  // namespace strata::train::fixtures
