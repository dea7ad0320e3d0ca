#include "core/io/hdf5_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/ops.h"

namespace strata::io {
namespace {

namespace fs = std::filesystem;

// A per-test scratch directory, removed afterwards.
class H5FileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("strata_h5_" + std::to_string(::getpid()) + "_" + info->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

// Expects `fn` to throw strata::Error whose message contains every one of `parts`.
template <class Fn>
void expect_error(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected strata::Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
  }
}

TEST_F(H5FileTest, RoundTripsEveryDType) {
  const std::string path = file("t.h5");
  const Tensor f32 = from_vector(std::vector<float>{1.5f, -2.25f, 3e-8f, 7.f, 0.f, -0.f}, {2, 3});
  const Tensor f64 = from_vector(std::vector<double>{1.0 / 3.0, -1e300, 2.5e-310}, {3});
  const Tensor i32 = from_vector(std::vector<int32_t>{-7, 0, INT32_MAX, INT32_MIN}, {2, 2, 1});
  const Tensor i64 = from_vector(std::vector<int64_t>{INT64_MIN, 5, INT64_MAX}, {3});
  const Tensor b8 = from_vector(std::vector<bool>{true, false, false, true, true}, {5});
  const Tensor bf =
      from_vector(std::vector<float>{1.0f, -3.140625f, 1e-3f, 65280.f}, {4}).to(DType::bf16);
  {
    H5File f = H5File::open(path, H5File::Mode::Truncate);
    f.write("f32", f32);
    f.write("/f64", f64);
    f.write("i32", i32);
    f.write("i64", i64);
    f.write("b8", b8);
    f.write("bf16", bf);
  }
  H5File f = H5File::open(path, H5File::Mode::Read);
  const Tensor r32 = f.read("f32");
  EXPECT_EQ(r32.dtype(), DType::f32);
  EXPECT_EQ(r32.shape(), (Shape{2, 3}));
  EXPECT_EQ(r32.to_vector<float>(), f32.to_vector<float>());
  EXPECT_EQ(f.read("f64").to_vector<double>(), f64.to_vector<double>());
  EXPECT_EQ(f.read("i32").shape(), (Shape{2, 2, 1}));
  EXPECT_EQ(f.read("i32").to_vector<int32_t>(), i32.to_vector<int32_t>());
  EXPECT_EQ(f.read("i64").to_vector<int64_t>(), i64.to_vector<int64_t>());
  EXPECT_EQ(f.read("b8").dtype(), DType::b8);
  EXPECT_EQ(f.read("b8").to_vector<bool>(), b8.to_vector<bool>());
  const Tensor rbf = f.read("bf16");
  EXPECT_EQ(rbf.dtype(), DType::bf16);
  EXPECT_EQ(f.attr_string("bf16", "strata_dtype"), "bf16");
  const auto want = bf.to_vector<bf16>();
  const auto got = rbf.to_vector<bf16>();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].bits, want[i].bits);

  EXPECT_EQ(f.dtype_of("f64"), DType::f64);
  EXPECT_EQ(f.dtype_of("bf16"), DType::bf16);
  EXPECT_EQ(f.dtype_of("b8"), DType::b8);
  EXPECT_EQ(f.shape_of("f32"), (std::vector<int64_t>{2, 3}));
}

TEST_F(H5FileTest, ScalarAndEmptyTensors) {
  const std::string path = file("s.h5");
  {
    H5File f = H5File::open(path, H5File::Mode::Truncate);
    f.write("scalar", scalar_tensor(2.75, DType::f64));
    f.write("empty", zeros({0, 3}, DType::f32));
  }
  H5File f = H5File::open(path, H5File::Mode::Read);
  const Tensor s = f.read("scalar");
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.item<double>(), 2.75);
  EXPECT_TRUE(f.shape_of("scalar").empty());
  EXPECT_EQ(f.read("empty").shape(), (Shape{0, 3}));
}

TEST_F(H5FileTest, NonContiguousWrittenInLogicalOrder) {
  const std::string path = file("nc.h5");
  const Tensor base = arange(0, 12, 1, DType::f32).view({3, 4});
  const Tensor t = base.t();                                       // [4, 3], transposed strides
  const Tensor n = base.narrow(1, 1, 2);                           // [3, 2], row stride 4
  const Tensor e = base.select(0, 1).unsqueeze(0).expand({2, 4});  // stride-0 rows
  {
    H5File f = H5File::open(path, H5File::Mode::Truncate);
    f.write("t", t);
    f.write("n", n);
    f.write("e", e);
  }
  H5File f = H5File::open(path, H5File::Mode::Read);
  EXPECT_EQ(f.read("t").shape(), (Shape{4, 3}));
  EXPECT_EQ(f.read("t").to_vector<float>(), t.to_vector<float>());
  EXPECT_EQ(f.read("n").to_vector<float>(), n.to_vector<float>());
  EXPECT_EQ(f.read("e").to_vector<float>(), e.to_vector<float>());
}

TEST_F(H5FileTest, NestedGroupsListAndExists) {
  const std::string path = file("g.h5");
  H5File f = H5File::open(path, H5File::Mode::Truncate);
  f.write("/model/layers/0/w", ones({2, 2}));
  f.write("/model/layers/1/w", ones({2, 2}));
  f.write("model/layers/0/b", zeros({2}));
  f.write("/step", scalar_tensor(3, DType::i64));
  EXPECT_EQ(f.list(), (std::vector<std::string>{"model", "step"}));
  EXPECT_EQ(f.list("/model/layers"), (std::vector<std::string>{"0", "1"}));
  EXPECT_EQ(f.list("/model/layers/0/"), (std::vector<std::string>{"b", "w"}));
  EXPECT_TRUE(f.exists("/"));
  EXPECT_TRUE(f.exists("/model/layers"));
  EXPECT_TRUE(f.exists("model/layers/1/w"));
  EXPECT_FALSE(f.exists("/model/layers/2/w"));
  EXPECT_FALSE(f.exists("/nope/deeper"));
  EXPECT_FALSE(f.exists("/step/under_a_dataset"));
  expect_error([&] { f.list("/step"); }, {"/step", "not a group"});
  expect_error([&] { f.list("/missing"); }, {"/missing", "no group"});
  // Replacing a dataset keeps one copy with the new contents; a group is never replaced.
  f.write("/step", scalar_tensor(4, DType::i64));
  EXPECT_EQ(f.read("/step").item<int64_t>(), 4);
  expect_error([&] { f.write("/model", ones({1})); }, {"/model", "is a group"});
  f.flush();
}

TEST_F(H5FileTest, Attributes) {
  const std::string path = file("a.h5");
  {
    H5File f = H5File::open(path, H5File::Mode::Truncate);
    f.write("/g/x", ones({2}));
    f.set_attr("/", "version", std::string("torch 2.5"));
    f.set_attr("/", "step", int64_t{12345678901});
    f.set_attr("/g", "lr", 3e-4);
    f.set_attr("/g/x", "note", "ünïcode ok");
    f.set_attr("/g/x", "note", "replaced");
  }
  H5File f = H5File::open(path, H5File::Mode::ReadWrite);
  EXPECT_EQ(f.attr_string("/", "version"), "torch 2.5");
  EXPECT_EQ(f.attr_int("/", "step"), 12345678901);
  EXPECT_EQ(f.attr_double("/g", "lr"), 3e-4);
  EXPECT_EQ(f.attr_double("/", "step"), 12345678901.0);
  EXPECT_EQ(f.attr_string("g/x", "note"), "replaced");
  EXPECT_TRUE(f.has_attr("/g", "lr"));
  EXPECT_FALSE(f.has_attr("/g", "momentum"));
  EXPECT_FALSE(f.has_attr("/nothing", "lr"));
  expect_error([&] { f.attr_int("/g", "momentum"); }, {"/g", "momentum", "no attribute"});
  expect_error([&] { f.attr_int("/g", "lr"); }, {"lr", "not an integer"});
  expect_error([&] { f.attr_string("/", "step"); }, {"step", "not a string"});
  expect_error([&] { f.set_attr("/missing", "k", int64_t{1}); }, {"/missing"});
  // ReadWrite keeps what was there and accepts more.
  f.write("/g/y", zeros({1}));
  EXPECT_EQ(f.list("/g"), (std::vector<std::string>{"x", "y"}));
}

TEST_F(H5FileTest, MoveTransfersOwnership) {
  const std::string path = file("m.h5");
  H5File a = H5File::open(path, H5File::Mode::Truncate);
  a.write("x", ones({3}));
  H5File b = std::move(a);
  EXPECT_EQ(b.read("x").numel(), 3);
  H5File c = H5File::open(file("other.h5"), H5File::Mode::Truncate);
  c = std::move(b);
  EXPECT_TRUE(c.exists("x"));
  EXPECT_EQ(c.path(), path);
}

TEST_F(H5FileTest, OpenErrorsNameThePathAndReason) {
  const std::string missing = file("missing.h5");
  expect_error([&] { H5File::open(missing, H5File::Mode::Read); }, {missing, "no such file"});
  expect_error([&] { H5File::open(missing, H5File::Mode::ReadWrite); }, {missing, "no such file"});

  const std::string text = file("not_h5.txt");
  std::ofstream(text) << "this is plain text, not HDF5\n";
  expect_error([&] { H5File::open(text, H5File::Mode::Read); }, {text, "not an HDF5 file"});

  const std::string in_missing_dir = file("no/such/dir/x.h5");
  expect_error([&] { H5File::open(in_missing_dir, H5File::Mode::Truncate); },
               {in_missing_dir, "cannot create"});

  // Permission errors cannot be provoked as root, which ignores mode bits.
  if (::geteuid() != 0) {
    const std::string locked = file("locked.h5");
    { H5File::open(locked, H5File::Mode::Truncate).write("x", ones({1})); }
    fs::permissions(locked, fs::perms::none);
    expect_error([&] { H5File::open(locked, H5File::Mode::Read); }, {locked});
    fs::permissions(locked, fs::perms::owner_all);
  }
}

TEST_F(H5FileTest, DatasetErrorsNameTheDataset) {
  const std::string path = file("d.h5");
  { H5File::open(path, H5File::Mode::Truncate).write("/grp/x", ones({2})); }
  H5File f = H5File::open(path, H5File::Mode::Read);
  expect_error([&] { f.read("/grp/y"); }, {"/grp/y", "no dataset", path});
  expect_error([&] { f.read("/grp"); }, {"/grp", "not a dataset"});
  expect_error([&] { f.shape_of("/nope"); }, {"/nope"});
  expect_error([&] { f.write("/z", ones({1})); }, {"read-only", path});
  expect_error([&] { f.set_attr("/", "k", 1.0); }, {"read-only"});
}

// A dataset assembled from slabs (as the ranks of a parallel checkpoint write it) reads back as
// the whole tensor, and read_slab returns any box of it; serial files only here, the MPI-IO path
// is tests/parallel/parallel_checkpoint_mpitest.cpp.
TEST_F(H5FileTest, SlabsWriteAndReadBoxes) {
  const std::string path = file("slabs.h5");
  const Tensor whole = randn({4, 6}, RandomKey{9}, DType::f64);
  const Tensor flags = from_vector(std::vector<bool>{true, false, true, true, false, true}, {6});
  {
    H5File f = H5File::open(path, H5File::Mode::Truncate);
    EXPECT_FALSE(f.is_parallel());
    f.create_dataset("/g/w", DType::f64, {4, 6});
    f.write_slab("/g/w", whole.narrow(1, 0, 3), {0, 0});  // non-contiguous column blocks
    f.write_slab("/g/w", whole.narrow(1, 3, 3), {0, 3});
    f.write_slab("/g/w", Tensor(), {0, 0});  // nothing to write: a no-op on a serial file
    f.create_dataset("b", DType::b8, {6});
    f.write_slab("b", flags.narrow(0, 2, 4), {2});
    f.write_slab("b", flags.narrow(0, 0, 2), {0});
    f.create_dataset("h", DType::bf16, {2});
    f.write_slab("h", from_vector(std::vector<float>{1.f, 2.f}, {2}).to(DType::bf16), {0});
    f.create_dataset("s", DType::i64, {});
    f.write_slab("s", from_vector(std::vector<int64_t>{42}, {}), {});

    expect_error(
        [&] {
          f.write_slab("/g/w", whole.narrow(0, 0, 2), {3, 0});
        },
        {"write_slab", "/g/w", "dimension 0 range [3, 5)", "size 4"});
    expect_error(
        [&] {
          f.write_slab("/g/w", whole.to(DType::f32), {0, 0});
        },
        {"write_slab", "holds f64", "f32"});
    expect_error([&] { f.write_slab("/g/w", whole.reshape({24}), {0}); }, {"/g/w", "2 dimensions"});
  }
  const H5File f = H5File::open(path, H5File::Mode::Read);
  const auto same = [](const Tensor& a, const Tensor& b) {
    return a.shape() == b.shape() && a.dtype() == b.dtype() &&
           std::memcmp(a.contiguous().raw_data(), b.contiguous().raw_data(),
                       size_t(a.numel()) * a.element_size()) == 0;
  };
  EXPECT_TRUE(same(f.read("/g/w"), whole));
  EXPECT_TRUE(same(f.read_slab("/g/w", {1, 2}, {2, 3}), whole.narrow(0, 1, 2).narrow(1, 2, 3)));
  EXPECT_TRUE(same(f.read_slab("/g/w", {0, 5}, {4, 1}), whole.narrow(1, 5, 1)));
  EXPECT_EQ(f.read_slab("/g/w", {2, 0}, {0, 6}).numel(), 0);
  EXPECT_TRUE(same(f.read("b"), flags));
  EXPECT_TRUE(same(f.read_slab("b", {1}, {3}), flags.narrow(0, 1, 3)));
  EXPECT_EQ(f.dtype_of("h"), DType::bf16);
  EXPECT_EQ(f.read_slab("s", {}, {}).item<int64_t>(), 42);
  expect_error(
      [&] {
        f.read_slab("/g/w", {0, 4}, {1, 3});
      },
      {"read_slab", "/g/w", "dimension 1 range [4, 7)", "size 6"});
}

}  // namespace
}  // namespace strata::io
