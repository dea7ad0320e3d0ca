#pragma once
// Sequence-classification data for fine-tuning: examples read from TSV files, the
// sentence-order task built from the corpus, and BERT's [CLS] a [SEP] b [SEP] encoding.
//
// TSV format: one example per line, `label<TAB>text` or `label<TAB>text_a<TAB>text_b`; labels are
// integers 0..C-1. Lines starting with '#' and empty lines are skipped.
#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace strata::data {

struct ClassificationExample {
  int32_t label = 0;
  std::string text_a, text_b;  // text_b empty for single-text tasks
};

// Throws naming the file and line of a malformed example.
std::vector<ClassificationExample> read_classification_tsv(const std::string& path);
void write_classification_tsv(const std::string& path,
                              const std::vector<ClassificationExample>& examples);

// Sentence-order prediction (ALBERT's SOP), built from plain-text documents: two consecutive
// sentences of one paragraph, label 1 in their original order and 0 swapped (a fair coin from
// Philox(seed, Objective, pair index)). A sentence has 4..48 words, most of them alphabetic, so
// markup lines do not qualify. Takes at most `max_examples` pairs, spread over the documents in
// order. Deterministic in (inputs, seed).
std::vector<ClassificationExample> sentence_order_examples(const std::vector<std::string>& inputs,
                                                           int64_t max_examples, uint64_t seed);

// Word-order detection: a prose sentence (as above) as it was written (label 1) or with its words
// shuffled (0; a Philox permutation that moves at least two words, the final punctuation kept
// last), one text per example; the tokenizer's lower-casing hides capitals. Needs
// the local syntax a language model learns, so it shows what pre-training transferred even for
// a small, briefly pre-trained encoder.
std::vector<ClassificationExample> word_order_examples(const std::vector<std::string>& inputs,
                                                       int64_t max_examples, uint64_t seed);

// Source identification: which corpus source a prose sentence comes from (the document's file
// name up to "__": bible, linux, python for the repo's corpus). `sources` is the label set, in
// label order (source_names of the training split, so every split labels alike); sentences are
// taken round-robin over the sources, evenly spaced through each one's documents, so the classes
// are balanced. With few training examples it shows what pre-training brings.
std::vector<std::string> source_names(const std::vector<std::string>& inputs);
std::vector<ClassificationExample> source_examples(const std::vector<std::string>& inputs,
                                                   const std::vector<std::string>& sources,
                                                   int64_t max_examples);

// [CLS] a [SEP] (b [SEP]) truncated to seq_len (longest text first) and padded with PAD.
// `valid` receives the count of real tokens. Needs a tokenizer with [CLS], [SEP] and PAD.
std::vector<int32_t> encode_classification(const Tokenizer& tokenizer,
                                           const ClassificationExample& example, int64_t seq_len,
                                           int64_t* valid = nullptr);

}  // namespace strata::data
