// The trainer's device option (TrainOptions::device, `run.device`): a device this build or this
// machine cannot provide stops the run before it reads anything, with an error naming the fix.
// GPU training itself is tested in tests/cuda/train_cuda_test.cpp.
#include <gtest/gtest.h>

#include <sstream>

#include "core/device_select.h"
#include "core/error.h"
#include "core/runtime.h"
#include "train/trainer.h"

namespace strata::train {
namespace {

std::string train_error(const std::string& device) {
  TrainOptions o;
  o.device = device;
  o.tokenizer = "/nonexistent/tokenizer.model";  // never reached
  o.train_data = o.valid_data = "/nonexistent/data";
  std::ostringstream log;
  try {
    train(o, log);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TrainDeviceOption, DefaultIsTheCpu) {
  EXPECT_EQ(TrainOptions().device, "cpu");
}

TEST(TrainDeviceOption, UnknownDeviceIsAnErrorListingTheValidOnes) {
  const std::string e = train_error("tpu");
  EXPECT_NE(e.find("run.device: unknown device 'tpu'"), std::string::npos) << e;
  EXPECT_NE(e.find("cpu, cuda, cuda:N"), std::string::npos) << e;
}

TEST(TrainDeviceOption, UnavailableGpuIsAnErrorNamingTheFix) {
  if (Runtime::get().cuda_device_count() > 0) GTEST_SKIP() << "a GPU is visible";
  const std::string e = train_error("cuda");
  if (!cuda_built())
    EXPECT_NE(e.find("-DSTRATA_CUDA=ON"), std::string::npos) << e;
  else
    EXPECT_NE(e.find("no CUDA device is visible"), std::string::npos) << e;
  // Nothing was read: the error is about the device, not the missing data.
  EXPECT_EQ(e.find("nonexistent"), std::string::npos) << e;
}

}  // namespace
}  // namespace strata::train
