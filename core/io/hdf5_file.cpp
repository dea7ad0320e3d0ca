#include "core/io/hdf5_file.h"

#include <hdf5.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <type_traits>
#include <utility>

#include "core/error.h"

namespace strata::io {

static_assert(std::is_same_v<hid_t, int64_t>, "H5File stores hid_t as int64_t (HDF5 >= 1.10)");
static_assert(sizeof(bool) == 1, "bool tensors are written as uint8 without conversion");

namespace {

// The message of the innermost entry of HDF5's error stack (where the failure was detected, e.g.
// "unable to open file: ... errno = 13, error message = 'Permission denied'"), then clears it.
herr_t innermost_error(unsigned n, const H5E_error2_t* err, void* out) {
  if (n == 0 && err->desc != nullptr) *static_cast<std::string*>(out) = err->desc;
  return 0;
}
// A failed system call reads "file write failed: time = ..., filename = ..., file descriptor =
// 4, errno = 28, error message = 'No space left on device', buf = 0x..., ...": keep what it did
// and why ("file write failed: No space left on device (errno 28)").
std::string condense_system_error(const std::string& msg) {
  const size_t colon = msg.find(": time = ");
  const size_t err = msg.find("errno = ");
  const size_t text = msg.find("error message = '");
  if (colon == std::string::npos || err == std::string::npos || text == std::string::npos)
    return msg;
  const size_t text_end = msg.find('\'', text + 17);
  const size_t err_end = msg.find(',', err);
  if (text_end == std::string::npos || err_end == std::string::npos) return msg;
  return msg.substr(0, colon) + ": " + msg.substr(text + 17, text_end - text - 17) + " (errno " +
         msg.substr(err + 8, err_end - err - 8) + ")";
}
std::string take_h5_error() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_error, &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg.empty() ? "unknown HDF5 error" : condense_system_error(msg);
}

// Owns one HDF5 identifier; the close function depends on the kind of object.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, -1)), close_(o.close_) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle& operator=(Handle&&) = delete;
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  operator hid_t() const { return id_; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

// Wraps a freshly returned id; a negative id becomes a strata::Error with `context` and HDF5's
// reason.
template <class... Ctx>
Handle checked(hid_t id, herr_t (*close)(hid_t), const Ctx&... context) {
  if (id < 0) STRATA_FAIL(context..., ": ", take_h5_error());
  return Handle(id, close);
}
template <class... Ctx>
void check_status(herr_t status, const Ctx&... context) {
  if (status < 0) STRATA_FAIL(context..., ": ", take_h5_error());
}

// Library settings, made before every open; the first open is this process's first HDF5 call.
// - No exit handler: it closes whatever is still open, and crashes doing so after a write failed
//   on a full disk (HDF5 1.10: a dataset whose close failed stays registered with its file gone,
//   so the process ended with SIGSEGV after reporting the error). Every file here is closed by
//   its H5File, so the handler has nothing to do for us. It can only be turned off before the
//   library initialises; later calls do nothing.
// - No automatic error printing: it writes whole stack traces to stderr for conditions we report
//   as exceptions (and for probes such as H5Lexists on a missing parent).
void silence_hdf5() {
  H5dont_atexit();
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

// "a/b" and "/a/b/" both mean "/a/b".
std::string normalize(const std::string& name) {
  std::string out = "/";
  size_t i = 0;
  while (i < name.size()) {
    size_t j = name.find('/', i);
    if (j == std::string::npos) j = name.size();
    if (j > i) {
      if (out.size() > 1) out += '/';
      out.append(name, i, j - i);
    }
    i = j + 1;
  }
  return out;
}

// The file-access property list: serial files use HDF5's default (POSIX) driver; open_parallel
// adds the MPI-IO one.
Handle make_file_access() {
  Handle fapl = checked(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "H5File: H5Pcreate");
  // Closing the file closes any object id still open in it instead of keeping the file alive.
  check_status(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), "H5File: H5Pset_fclose_degree");
  return fapl;
}

struct TypePair {
  hid_t memory;
  hid_t file;
};
TypePair h5_types(DType dt) {
  switch (dt) {
    case DType::f32:
      return {H5T_NATIVE_FLOAT, H5T_IEEE_F32LE};
    case DType::f64:
      return {H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE};
    case DType::bf16:
      return {H5T_NATIVE_UINT16, H5T_STD_U16LE};
    case DType::i32:
      return {H5T_NATIVE_INT32, H5T_STD_I32LE};
    case DType::i64:
      return {H5T_NATIVE_INT64, H5T_STD_I64LE};
    case DType::b8:
      return {H5T_NATIVE_UINT8, H5T_STD_U8LE};
  }
  STRATA_FAIL("H5File: unknown dtype");
}

constexpr const char* kDTypeAttr = "strata_dtype";

}  // namespace

// ---- open / close -------------------------------------------------------------------------------

namespace {

// Opens or creates `path` with the given file-access list (serial or MPI-IO).
hid_t open_with(const std::string& path, H5File::Mode mode, hid_t fapl) {
  if (mode == H5File::Mode::Truncate) {
    hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (id < 0) STRATA_FAIL("H5File: cannot create '", path, "': ", take_h5_error());
    return id;
  }
  std::error_code ec;
  STRATA_CHECK(std::filesystem::exists(path, ec), "H5File: cannot open '", path, "': no such file");
  STRATA_CHECK(!std::filesystem::is_directory(path, ec), "H5File: cannot open '", path,
               "': it is a directory");
  const htri_t is_h5 = H5Fis_hdf5(path.c_str());
  if (is_h5 < 0) STRATA_FAIL("H5File: cannot open '", path, "': ", take_h5_error());
  STRATA_CHECK(is_h5 > 0, "H5File: cannot open '", path, "': not an HDF5 file");
  const bool writable = mode == H5File::Mode::ReadWrite;
  hid_t id = H5Fopen(path.c_str(), writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, fapl);
  if (id < 0) STRATA_FAIL("H5File: cannot open '", path, "': ", take_h5_error());
  return id;
}

}  // namespace

H5File H5File::open_parallel(const std::string& path, Mode mode, int mpi_comm_fortran) {
  silence_hdf5();
  Handle fapl = make_file_access();
  check_status(H5Pset_fapl_mpio(fapl, MPI_Comm_f2c(mpi_comm_fortran), MPI_INFO_NULL),
               "H5File: H5Pset_fapl_mpio for '", path, "'");
  H5File f(open_with(path, mode, fapl), path, mode != Mode::Read);
  f.parallel_ = true;
  return f;
}

H5File H5File::open(const std::string& path, Mode mode) {
  silence_hdf5();
  Handle fapl = make_file_access();
  return H5File(open_with(path, mode, fapl), path, mode != Mode::Read);
}

H5File::H5File(H5File&& other) noexcept
    : id_(std::exchange(other.id_, -1)),
      path_(std::move(other.path_)),
      writable_(other.writable_),
      parallel_(other.parallel_) {}

H5File& H5File::operator=(H5File&& other) noexcept {
  if (this != &other) {
    if (id_ >= 0) H5Fclose(id_);
    id_ = std::exchange(other.id_, -1);
    path_ = std::move(other.path_);
    writable_ = other.writable_;
    parallel_ = other.parallel_;
  }
  return *this;
}

H5File::~H5File() {
  if (id_ >= 0) H5Fclose(id_);
}

void H5File::check_writable(const char* what) const {
  STRATA_CHECK(id_ >= 0, "H5File::", what, ": file was moved from");
  STRATA_CHECK(writable_, "H5File::", what, ": '", path_, "' is open read-only");
}

void H5File::flush() {
  STRATA_CHECK(id_ >= 0, "H5File::flush: file was moved from");
  check_status(H5Fflush(id_, H5F_SCOPE_GLOBAL), "H5File::flush '", path_, "'");
}

// ---- structure ----------------------------------------------------------------------------------

bool H5File::exists(const std::string& name) const {
  STRATA_CHECK(id_ >= 0, "H5File::exists: file was moved from");
  const std::string path = normalize(name);
  if (path == "/") return true;
  // H5Lexists fails (rather than answering false) when an intermediate link is missing, so each
  // prefix is probed in turn.
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    const std::string prefix = path.substr(0, pos);
    const htri_t r = H5Lexists(id_, prefix.c_str(), H5P_DEFAULT);
    if (r <= 0) {
      if (r < 0) H5Eclear2(H5E_DEFAULT);
      return false;
    }
  }
  return true;
}

namespace {

herr_t collect_name(hid_t, const char* name, const H5L_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->emplace_back(name);
  return 0;
}

// Opens an existing object, failing with `what` and the object's path when it is not there or is
// not of the expected kind (H5I_BADID accepts either a group or a dataset).
Handle open_object(hid_t file, const H5File& f, const std::string& path, H5I_type_t kind,
                   const char* what) {
  const char* noun = kind == H5I_GROUP ? "group" : kind == H5I_DATASET ? "dataset" : "object";
  STRATA_CHECK(f.exists(path), "H5File::", what, ": no ", noun, " '", path, "' in '", f.path(),
               "'");
  Handle obj = checked(H5Oopen(file, path.c_str(), H5P_DEFAULT), H5Oclose, "H5File::", what,
                       ": cannot open '", path, "' in '", f.path(), "'");
  if (kind != H5I_BADID) {
    const H5I_type_t got = H5Iget_type(obj);
    STRATA_CHECK(got == kind, "H5File::", what, ": '", path, "' in '", f.path(), "' is not a ",
                 noun);
  }
  return obj;
}

// The strata dtype a dataset holds, from its HDF5 type (and the bf16 tag).
DType stored_dtype(hid_t dset, const std::string& path, const std::string& file) {
  Handle type = checked(H5Dget_type(dset), H5Tclose, "H5File: type of '", path, "'");
  const H5T_class_t cls = H5Tget_class(type);
  const size_t size = H5Tget_size(type);
  auto unsupported = [&](const char* what) -> DType {
    STRATA_FAIL("H5File: dataset '", path, "' in '", file, "' has an unsupported type (", what,
                " of ", size, " bytes)");
  };
  if (cls == H5T_FLOAT) {
    if (size == 4) return DType::f32;
    if (size == 8) return DType::f64;
    return unsupported("float");
  }
  if (cls == H5T_ENUM) {
    // h5py stores numpy bool as an enum {FALSE=0, TRUE=1} over int8.
    if (size == 1) return DType::b8;
    return unsupported("enum");
  }
  if (cls != H5T_INTEGER) return unsupported("non-numeric class");
  const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
  if (is_signed && size == 4) return DType::i32;
  if (is_signed && size == 8) return DType::i64;
  if (!is_signed && size == 1) return DType::b8;
  if (!is_signed && size == 2 && H5Aexists(dset, kDTypeAttr) > 0) return DType::bf16;
  return unsupported(is_signed ? "signed integer" : "unsigned integer");
}

Shape dataset_shape(hid_t dset, const std::string& path) {
  Handle space = checked(H5Dget_space(dset), H5Sclose, "H5File: dataspace of '", path, "'");
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0) STRATA_FAIL("H5File: dataspace of '", path, "': ", take_h5_error());
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  return Shape(dims.begin(), dims.end());
}

}  // namespace

std::vector<std::string> H5File::list(const std::string& group) const {
  const std::string path = normalize(group);
  Handle g = open_object(id_, *this, path, H5I_GROUP, "list");
  std::vector<std::string> names;
  check_status(H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_name, &names),
               "H5File::list '", path, "' in '", path_, "'");
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<int64_t> H5File::shape_of(const std::string& name) const {
  const std::string path = normalize(name);
  Handle d = open_object(id_, *this, path, H5I_DATASET, "shape_of");
  return dataset_shape(d, path);
}

DType H5File::dtype_of(const std::string& name) const {
  const std::string path = normalize(name);
  Handle d = open_object(id_, *this, path, H5I_DATASET, "dtype_of");
  return stored_dtype(d, path, path_);
}

// ---- datasets -----------------------------------------------------------------------------------

void H5File::create_dataset(const std::string& name, DType dtype, const Shape& shape) {
  check_writable("create_dataset");
  const std::string path = normalize(name);
  STRATA_CHECK(path != "/", "H5File::create_dataset: dataset name '", name, "' is empty");
  if (exists(path)) {
    Handle old = open_object(id_, *this, path, H5I_BADID, "create_dataset");
    STRATA_CHECK(H5Iget_type(old) == H5I_DATASET, "H5File::create_dataset: '", path, "' in '",
                 path_, "' is a group; refusing to replace it with a dataset");
    check_status(H5Ldelete(id_, path.c_str(), H5P_DEFAULT), "H5File::create_dataset: replacing '",
                 path, "'");
  }
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Handle space = shape.empty()
                     ? checked(H5Screate(H5S_SCALAR), H5Sclose, "H5File::create_dataset: H5Screate")
                     : checked(H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose,
                               "H5File::create_dataset: H5Screate_simple");
  Handle lcpl = checked(H5Pcreate(H5P_LINK_CREATE), H5Pclose, "H5File::create_dataset: H5Pcreate");
  check_status(H5Pset_create_intermediate_group(lcpl, 1),
               "H5File::create_dataset: intermediate groups");
  Handle dcpl =
      checked(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "H5File::create_dataset: H5Pcreate");
  // Parallel HDF5 allocates a dataset's space when it is created; without this it would also
  // write fill values there, a second pass over every byte that the slabs overwrite anyway.
  if (parallel_)
    check_status(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER), "H5File::create_dataset: fill time");
  Handle dset =
      checked(H5Dcreate2(id_, path.c_str(), h5_types(dtype).file, space, lcpl, dcpl, H5P_DEFAULT),
              H5Dclose, "H5File::create_dataset: cannot create '", path, "' in '", path_, "'");
  if (dtype == DType::bf16) set_attr(path, kDTypeAttr, std::string("bf16"));
}

void H5File::write(const std::string& name, const Tensor& t) {
  check_writable("write");
  const std::string path = normalize(name);
  STRATA_CHECK(path != "/", "H5File::write: dataset name '", name, "' is empty");
  STRATA_CHECK(t.defined(), "H5File::write '", path, "': tensor is undefined");
  STRATA_CHECK(t.device().is_cpu(), "H5File::write '", path, "': tensor is on ", t.device().str(),
               ", expected a CPU tensor");
  // detach: writing is not part of any graph.
  const Tensor c = t.detach().contiguous();
  create_dataset(path, c.dtype(), c.shape());
  if (c.numel() == 0) return;
  Handle dset = open_object(id_, *this, path, H5I_DATASET, "write");
  check_status(
      H5Dwrite(dset, h5_types(c.dtype()).memory, H5S_ALL, H5S_ALL, H5P_DEFAULT, c.raw_data()),
      "H5File::write '", path, "' in '", path_, "'");
}

namespace {

// Selects the box [offset, offset + count) of a dataset's file space (all of a scalar one), after
// checking that it lies inside.
void select_box(hid_t space, const std::string& path, const std::vector<int64_t>& offset,
                const Shape& count, const char* what) {
  const Shape dims = [&] {
    const int rank = H5Sget_simple_extent_ndims(space);
    std::vector<hsize_t> d(size_t(std::max(rank, 0)));
    if (rank > 0) H5Sget_simple_extent_dims(space, d.data(), nullptr);
    return Shape(d.begin(), d.end());
  }();
  STRATA_CHECK(offset.size() == dims.size() && count.size() == dims.size(), "H5File::", what, " '",
               path, "': the dataset has ", dims.size(), " dimensions, got an offset of ",
               offset.size(), " and a shape of ", count.size());
  for (size_t i = 0; i < dims.size(); ++i)
    STRATA_CHECK(offset[i] >= 0 && count[i] >= 0 && offset[i] + count[i] <= dims[i],
                 "H5File::", what, " '", path, "': dimension ", i, " range [", offset[i], ", ",
                 offset[i] + count[i], ") is outside the dataset's size ", dims[i]);
  if (dims.empty()) {
    check_status(H5Sselect_all(space), "H5File::", what, " '", path, "': select");
    return;
  }
  const std::vector<hsize_t> start(offset.begin(), offset.end()), n(count.begin(), count.end());
  check_status(H5Sselect_hyperslab(space, H5S_SELECT_SET, start.data(), nullptr, n.data(), nullptr),
               "H5File::", what, " '", path, "': select hyperslab");
}

Handle memory_space(const Shape& shape, const char* what) {
  if (shape.empty()) return checked(H5Screate(H5S_SCALAR), H5Sclose, "H5File::", what);
  const std::vector<hsize_t> dims(shape.begin(), shape.end());
  return checked(H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose,
                 "H5File::", what);
}

}  // namespace

void H5File::write_slab(const std::string& name, const Tensor& t,
                        const std::vector<int64_t>& offset) {
  check_writable("write_slab");
  const std::string path = normalize(name);
  Handle d = open_object(id_, *this, path, H5I_DATASET, "write_slab");
  Handle file_space = checked(H5Dget_space(d), H5Sclose, "H5File::write_slab: dataspace");
  Handle xfer = checked(H5Pcreate(H5P_DATASET_XFER), H5Pclose, "H5File::write_slab: H5Pcreate");
  if (parallel_)
    check_status(H5Pset_dxpl_mpio(xfer, H5FD_MPIO_COLLECTIVE), "H5File::write_slab: collective");
  const bool has_data = t.defined() && t.numel() > 0;
  if (!has_data) {
    // A rank with nothing to write still takes part in the collective, selecting nothing.
    if (!parallel_) return;
    const hsize_t one = 1;
    Handle mem = checked(H5Screate_simple(1, &one, nullptr), H5Sclose, "H5File::write_slab");
    check_status(H5Sselect_none(mem), "H5File::write_slab: select none");
    check_status(H5Sselect_none(file_space), "H5File::write_slab: select none");
    const DType dt = stored_dtype(d, path, path_);
    unsigned char dummy[8] = {};
    check_status(H5Dwrite(d, h5_types(dt).memory, mem, file_space, xfer, dummy),
                 "H5File::write_slab '", path, "' in '", path_, "'");
    return;
  }
  STRATA_CHECK(t.device().is_cpu(), "H5File::write_slab '", path, "': tensor is on ",
               t.device().str(), ", expected a CPU tensor");
  const DType dt = stored_dtype(d, path, path_);
  STRATA_CHECK(t.dtype() == dt, "H5File::write_slab '", path, "': the dataset holds ",
               dtype_name(dt), ", got a ", dtype_name(t.dtype()), " tensor");
  const Tensor c = t.detach().contiguous();
  select_box(file_space, path, offset, c.shape(), "write_slab");
  Handle mem = memory_space(c.shape(), "write_slab: memory space");
  check_status(H5Dwrite(d, h5_types(dt).memory, mem, file_space, xfer, c.raw_data()),
               "H5File::write_slab '", path, "' in '", path_, "'");
}

namespace {

// Reads the selection `file_space` of dataset `d` into `t` (stored dtype, the selection's shape;
// H5S_ALL for both spaces reads everything).
void read_into(hid_t d, const std::string& path, const std::string& file, hid_t mem_space,
               hid_t file_space, Tensor& t) {
  const DType dt = t.dtype();
  Handle file_type = checked(H5Dget_type(d), H5Tclose, "H5File::read: type of '", path, "'");
  if (dt == DType::b8 && H5Tget_class(file_type) == H5T_ENUM) {
    // HDF5 does not convert enums to integers: read the raw byte values and normalise to 0/1.
    Handle native = checked(H5Tget_native_type(file_type, H5T_DIR_ASCEND), H5Tclose,
                            "H5File::read: native type of '", path, "'");
    std::vector<uint8_t> raw(size_t(t.numel()));
    check_status(H5Dread(d, native, mem_space, file_space, H5P_DEFAULT, raw.data()),
                 "H5File::read '", path, "' in '", file, "'");
    bool* out = t.data<bool>();
    for (size_t i = 0; i < raw.size(); ++i) out[i] = raw[i] != 0;
    return;
  }
  check_status(H5Dread(d, h5_types(dt).memory, mem_space, file_space, H5P_DEFAULT, t.raw_data()),
               "H5File::read '", path, "' in '", file, "'");
  if (dt == DType::b8) {
    // Any nonzero byte is true; a bool object must hold exactly 0 or 1.
    auto* bytes = static_cast<uint8_t*>(t.raw_data());
    for (int64_t i = 0; i < t.numel(); ++i) bytes[i] = bytes[i] != 0;
  }
}

}  // namespace

Tensor H5File::read(const std::string& name) const {
  const std::string path = normalize(name);
  Handle d = open_object(id_, *this, path, H5I_DATASET, "read");
  Tensor t = Tensor::empty(dataset_shape(d, path), stored_dtype(d, path, path_));
  if (t.numel() > 0) read_into(d, path, path_, H5S_ALL, H5S_ALL, t);
  return t;
}

Tensor H5File::read_slab(const std::string& name, const std::vector<int64_t>& offset,
                         const Shape& shape) const {
  const std::string path = normalize(name);
  Handle d = open_object(id_, *this, path, H5I_DATASET, "read_slab");
  Handle file_space = checked(H5Dget_space(d), H5Sclose, "H5File::read_slab: dataspace");
  select_box(file_space, path, offset, shape, "read_slab");
  Tensor t = Tensor::empty(shape, stored_dtype(d, path, path_));
  if (t.numel() == 0) return t;
  Handle mem = memory_space(shape, "read_slab: memory space");
  read_into(d, path, path_, mem, file_space, t);
  return t;
}

// ---- attributes ---------------------------------------------------------------------------------

namespace {

Handle string_type() {
  Handle type = checked(H5Tcopy(H5T_C_S1), H5Tclose, "H5File: H5Tcopy");
  // Variable-length UTF-8 is what h5py writes for a Python str, so both sides read it as str.
  check_status(H5Tset_size(type, H5T_VARIABLE), "H5File: H5Tset_size");
  check_status(H5Tset_cset(type, H5T_CSET_UTF8), "H5File: H5Tset_cset");
  return type;
}

void write_attr(hid_t file, const H5File& f, const std::string& object, const std::string& key,
                hid_t file_type, hid_t mem_type, const void* value) {
  const std::string path = normalize(object);
  Handle obj = open_object(file, f, path, H5I_BADID, "set_attr");
  const htri_t there = H5Aexists(obj, key.c_str());
  check_status(there, "H5File::set_attr '", key, "' on '", path, "'");
  if (there > 0)
    check_status(H5Adelete(obj, key.c_str()), "H5File::set_attr: replacing '", key, "' on '", path,
                 "'");
  Handle space = checked(H5Screate(H5S_SCALAR), H5Sclose, "H5File::set_attr: H5Screate");
  Handle attr =
      checked(H5Acreate2(obj, key.c_str(), file_type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
              "H5File::set_attr '", key, "' on '", path, "' in '", f.path(), "'");
  check_status(H5Awrite(attr, mem_type, value), "H5File::set_attr '", key, "' on '", path, "'");
}

struct OpenAttr {
  Handle obj;
  Handle attr;
  Handle type;
};

// Opens attribute `key` of `object`, failing with both names when missing, and checks that it
// holds one value.
OpenAttr open_attr(hid_t file, const H5File& f, const std::string& object, const std::string& key,
                   const char* what) {
  const std::string path = normalize(object);
  Handle obj = open_object(file, f, path, H5I_BADID, what);
  STRATA_CHECK(H5Aexists(obj, key.c_str()) > 0, "H5File::", what, ": no attribute '", key, "' on '",
               path, "' in '", f.path(), "'");
  Handle attr = checked(H5Aopen(obj, key.c_str(), H5P_DEFAULT), H5Aclose, "H5File::", what,
                        ": attribute '", key, "' on '", path, "'");
  Handle space = checked(H5Aget_space(attr), H5Sclose, "H5File::", what, ": dataspace");
  STRATA_CHECK(H5Sget_simple_extent_npoints(space) == 1, "H5File::", what, ": attribute '", key,
               "' on '", path, "' holds ", H5Sget_simple_extent_npoints(space),
               " values, expected one");
  Handle type = checked(H5Aget_type(attr), H5Tclose, "H5File::", what, ": type");
  return OpenAttr{std::move(obj), std::move(attr), std::move(type)};
}

}  // namespace

void H5File::set_attr(const std::string& object, const std::string& key, const std::string& value) {
  check_writable("set_attr");
  Handle type = string_type();
  const char* p = value.c_str();
  write_attr(id_, *this, object, key, type, type, &p);
}

void H5File::set_attr(const std::string& object, const std::string& key, int64_t value) {
  check_writable("set_attr");
  write_attr(id_, *this, object, key, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

void H5File::set_attr(const std::string& object, const std::string& key, double value) {
  check_writable("set_attr");
  write_attr(id_, *this, object, key, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

bool H5File::has_attr(const std::string& object, const std::string& key) const {
  const std::string path = normalize(object);
  if (!exists(path)) return false;
  Handle obj = open_object(id_, *this, path, H5I_BADID, "has_attr");
  return H5Aexists(obj, key.c_str()) > 0;
}

std::string H5File::attr_string(const std::string& object, const std::string& key) const {
  OpenAttr a = open_attr(id_, *this, object, key, "attr_string");
  STRATA_CHECK(H5Tget_class(a.type) == H5T_STRING, "H5File::attr_string: attribute '", key,
               "' on '", normalize(object), "' is not a string");
  if (H5Tis_variable_str(a.type) > 0) {
    Handle mem = string_type();
    char* buf = nullptr;
    check_status(H5Aread(a.attr, mem, &buf), "H5File::attr_string '", key, "'");
    std::string out = buf ? buf : "";
    Handle space = checked(H5Screate(H5S_SCALAR), H5Sclose, "H5File::attr_string: H5Screate");
    H5Dvlen_reclaim(mem, space, H5P_DEFAULT, &buf);
    return out;
  }
  // Fixed-length (e.g. numpy bytes from h5py): NUL-padded or NUL-terminated.
  const size_t size = H5Tget_size(a.type);
  Handle mem = checked(H5Tcopy(H5T_C_S1), H5Tclose, "H5File::attr_string: H5Tcopy");
  check_status(H5Tset_size(mem, size + 1), "H5File::attr_string: H5Tset_size");
  std::string buf(size + 1, '\0');
  check_status(H5Aread(a.attr, mem, buf.data()), "H5File::attr_string '", key, "'");
  buf.resize(std::strlen(buf.c_str()));
  return buf;
}

int64_t H5File::attr_int(const std::string& object, const std::string& key) const {
  OpenAttr a = open_attr(id_, *this, object, key, "attr_int");
  STRATA_CHECK(H5Tget_class(a.type) == H5T_INTEGER, "H5File::attr_int: attribute '", key, "' on '",
               normalize(object), "' is not an integer");
  int64_t v = 0;
  check_status(H5Aread(a.attr, H5T_NATIVE_INT64, &v), "H5File::attr_int '", key, "'");
  return v;
}

double H5File::attr_double(const std::string& object, const std::string& key) const {
  OpenAttr a = open_attr(id_, *this, object, key, "attr_double");
  const H5T_class_t cls = H5Tget_class(a.type);
  STRATA_CHECK(cls == H5T_FLOAT || cls == H5T_INTEGER, "H5File::attr_double: attribute '", key,
               "' on '", normalize(object), "' is not a number");
  double v = 0;
  check_status(H5Aread(a.attr, H5T_NATIVE_DOUBLE, &v), "H5File::attr_double '", key, "'");
  return v;
}

}  // namespace strata::io
