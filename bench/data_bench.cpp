// Data pipeline throughput: tokenisation + sharding (MB/s of text, 1 and 2 threads) and loader
// batches/s per objective, plus what prefetching costs a training loop. JSON lines on stdout.
//
//   strata_bench_data [--corpus DIR] [--tokenizer FILE] [--mb N] [--reps N]
// Without --corpus it uses synthetic text; without --tokenizer it trains a small unigram model
// on the first 2 MB. Each figure comes with a same-run reference: reading and checksumming the
// same bytes (for prepare) and the sleep-only loop (for prefetch overhead).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_flags.h"
#include "data/file_util.h"
#include "data/hash.h"
#include "data/loader.h"
#include "data/prepare.h"

namespace fs = std::filesystem;
using namespace strata::data;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Copies up to `mb` MB of the corpus (or synthetic text) into one work directory, one file per
// document, so every measurement reads the same bytes.
std::string make_input(const std::string& corpus, double mb, const fs::path& work) {
  const fs::path dir = work / "input";
  fs::create_directories(dir);
  const auto budget = uint64_t(mb * 1e6);
  uint64_t total = 0;
  int n = 0;
  if (!corpus.empty()) {
    for (const auto& f : expand_inputs({corpus})) {
      if (total >= budget) break;
      fs::copy_file(f, dir / (std::to_string(n++) + ".txt"));
      total += fs::file_size(f);
    }
  } else {
    const char* words[] = {"the",   "model", "learns", "from",    "text", "and",
                           "every", "token", "counts", "towards", "a",    "lower",
                           "loss",  "while", "data",   "flows"};
    uint32_t s = 1;
    while (total < budget) {
      std::ofstream out(dir / (std::to_string(n++) + ".txt"));
      std::string doc;
      for (int w = 0; w < 20000; ++w) {
        s = s * 1664525u + 1013904223u;
        doc += words[s >> 28];
        doc += (s >> 20) % 13 == 0 ? ".\n" : " ";
      }
      out << doc;
      total += doc.size();
    }
  }
  return dir.string();
}

void emit(const char* json) {
  std::printf("%s\n", json), std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::string corpus, tokenizer_path;
  double mb = 8;
  int reps = 3;
  strata::bench::BenchFlags flags("strata_bench_data",
                                  "Prepare throughput and loader batches/s; JSON lines.");
  flags.add("corpus", &corpus, "text file or folder to prepare (a generated text)");
  flags.add("tokenizer", &tokenizer_path, "tokenizer model (a byte tokenizer)");
  flags.add("mb", &mb, "MB of generated text when there is no --corpus", 0.001, 1e6);
  flags.add("reps", &reps, "timed repetitions", 1, 1000);
  flags.parse(argc, argv);
  const fs::path work = fs::temp_directory_path() / "strata_bench_data";
  fs::remove_all(work);
  fs::create_directories(work);
  const std::string input = make_input(corpus, mb, work);
  const auto files = expand_inputs({input});
  uint64_t bytes = 0;
  for (const auto& f : files) bytes += fs::file_size(f);

  std::unique_ptr<Tokenizer> sp;
  if (!tokenizer_path.empty()) {
    sp = load_tokenizer(tokenizer_path);
  } else {
    TokenizerTrainOptions t;
    t.inputs = {files.front()};
    t.vocab = 4000;
    t.max_sentences = 50000;
    t.out = (work / "unigram.tok").string();
    sp = train_tokenizer(t);
  }
  const auto bytes_tok = load_tokenizer_bytes(byte_tokenizer_file(), "bytes");

  // Reference: read every file and checksum it, the floor under any prepare.
  std::vector<double> ref;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    Hasher64 h;
    for (const auto& f : files) h.update(read_file(f, "bench"));
    ref.push_back(seconds_since(t0));
    if (h.digest() == 42) std::puts("");
  }
  const double ref_mbs = double(bytes) / 1e6 / median(ref);

  for (const Tokenizer* tok : {bytes_tok.get(), sp.get()}) {
    for (int threads : {1, 2}) {
      std::vector<double> t;
      ShardStats stats;
      for (int r = 0; r < reps; ++r) {
        PrepareOptions o;
        o.inputs = {input};
        o.out = (work / "shards").string();
        o.threads = threads;
        o.progress = false;
        const auto t0 = Clock::now();
        stats = prepare(o, *tok);
        t.push_back(seconds_since(t0));
      }
      char buf[512];
      std::snprintf(
          buf, sizeof buf,
          "{\"bench\":\"prepare\",\"tokenizer\":\"%s\",\"vocab\":%d,\"threads\":%d,"
          "\"mb\":%.1f,\"tokens\":%llu,\"mb_per_s\":%.2f,\"ref_read_hash_mb_per_s\":%.1f}",
          std::string(tok->kind()).c_str(), tok->vocab_size(), threads, double(bytes) / 1e6,
          (unsigned long long)stats.tokens, double(bytes) / 1e6 / median(t), ref_mbs);
      emit(buf);
    }
  }

  // Loader throughput on the unigram shards (left by the last prepare run above).
  auto data = std::make_shared<ShardedDataset>((work / "shards").string());
  auto special = sp->special();
  struct Case {
    const char* name;
    std::shared_ptr<const Objective> obj;
    int64_t batch;
  };
  SpecialIds bert = special;  // MLM needs a [MASK]; borrow ids to time the same work
  bert.mask = special.sentinel(0);
  bert.sep = special.eos;
  std::vector<Case> cases{
      {"t5_span_corruption_512", std::make_shared<SpanCorruption>(SpanCorruptionOptions{}, special),
       128},
      {"mlm_128", std::make_shared<MaskedLm>(MaskedLmOptions{}, bert, sp->vocab_size()), 128},
      {"causal_128", std::make_shared<CausalLm>(CausalLmOptions{128, true}, special), 128},
      {"causal_128_documents", std::make_shared<CausalLm>(CausalLmOptions{128, false}, special),
       128},
  };
  for (const auto& c : cases) {
    std::vector<double> t;
    const int steps = 40;
    for (int r = 0; r < reps; ++r) {
      Loader l(data, c.obj, {.seed = 1, .global_batch = c.batch, .prefetch = 0});
      const auto t0 = Clock::now();
      for (int s = 0; s < steps; ++s) l.next();
      t.push_back(seconds_since(t0) / steps);
    }
    const double per = median(t);
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "{\"bench\":\"loader\",\"objective\":\"%s\",\"global_batch\":%lld,"
                  "\"batches_per_s\":%.1f,\"input_tokens_per_s\":%.0f,\"ms_per_batch\":%.3f}",
                  c.name, (long long)c.batch, 1 / per, double(c.batch * c.obj->input_len()) / per,
                  per * 1e3);
    emit(buf);
  }

  // Prefetch overhead: a loop that "trains" for 20 ms per step (sleeping, like a step waiting
  // on the other core's work) with and without the background thread.
  {
    const auto& c = cases[0];
    const int steps = 30;
    auto run = [&](int prefetch, bool load) {
      std::unique_ptr<Loader> l;
      if (load)
        l = std::make_unique<Loader>(
            data, c.obj, LoaderOptions{.seed = 1, .global_batch = c.batch, .prefetch = prefetch});
      const auto t0 = Clock::now();
      for (int s = 0; s < steps; ++s) {
        if (l) l->next();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      return seconds_since(t0) / steps * 1e3;
    };
    const double ref_ms = run(0, false), sync_ms = run(0, true), pre_ms = run(2, true);
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "{\"bench\":\"prefetch\",\"objective\":\"%s\",\"global_batch\":%lld,"
                  "\"step_ms_no_data_ref\":%.2f,\"step_ms_sync_loader\":%.2f,"
                  "\"step_ms_prefetch\":%.2f}",
                  c.name, (long long)c.batch, ref_ms, sync_ms, pre_ms);
    emit(buf);
  }
  fs::remove_all(work);
  return 0;
}
