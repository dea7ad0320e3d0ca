#pragma once
// H5File: one open HDF5 file, closed on destruction. Tensors are stored as datasets of their
// native HDF5 type (bool as uint8; bf16 as uint16 tagged with the attribute strata_dtype="bf16",
// since HDF5 has no bfloat16), so files written here are readable by h5py and vice versa.
// hdf5.h stays out of this header: handles are held as int64_t (hid_t in HDF5 1.10+).
//
// Not thread-safe: Debian's parallel HDF5 is built without the thread-safety lock, so one file
// object must not be used from two threads, and two files must not be used concurrently either.
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace strata::io {

class H5File {
 public:
  // Read: existing file, read-only. ReadWrite: existing file, writable. Truncate: create or
  // overwrite.
  enum class Mode { Read, ReadWrite, Truncate };

  // Throws strata::Error naming the path and the reason (missing, not an HDF5 file, permission).
  static H5File open(const std::string& path, Mode mode);

  // One file shared by every rank of an MPI communicator (MPI-IO driver), opened collectively.
  // The communicator is passed as its Fortran handle, MPI_Comm_c2f(comm), which keeps mpi.h out
  // of this header. On such a file, every call that changes structure or attributes (write,
  // create_dataset, set_attr, flush, and closing) is collective: all ranks make it in the same
  // order with the same arguments. write_slab is collective too; reads are independent.
  static H5File open_parallel(const std::string& path, Mode mode, int mpi_comm_fortran);
  bool is_parallel() const { return parallel_; }

  H5File(H5File&& other) noexcept;
  H5File& operator=(H5File&& other) noexcept;
  H5File(const H5File&) = delete;
  H5File& operator=(const H5File&) = delete;
  ~H5File();

  const std::string& path() const { return path_; }

  // Writes `t` (a CPU tensor, any layout: non-contiguous tensors are written in logical order) as
  // dataset `name` ("/a/b/c" or "a/b/c"), creating intermediate groups and replacing an existing
  // dataset of that name. 0-d tensors become scalar datasets.
  void write(const std::string& name, const Tensor& t);
  // A new contiguous CPU tensor with the stored dtype. uint8 and HDF5 enums of one byte (h5py's
  // bool) read as bool.
  Tensor read(const std::string& name) const;

  // Hyperslabs, for files that several processes share (parallel checkpoints):
  // create_dataset makes (replacing) dataset `name` of `dtype` and `shape` without writing data;
  // write_slab writes `t` into the existing dataset at `offset` (one index per dimension; the
  // dtype must be the stored one). On a parallel file it is a collective write: every rank
  // calls it for the dataset, a rank with nothing to write passing an undefined tensor.
  void create_dataset(const std::string& name, DType dtype, const Shape& shape);
  void write_slab(const std::string& name, const Tensor& t, const std::vector<int64_t>& offset);
  // The box [offset, offset + shape) of a dataset, as a new contiguous tensor of the stored
  // dtype (read like `read`).
  Tensor read_slab(const std::string& name, const std::vector<int64_t>& offset,
                   const Shape& shape) const;

  // True when every component of the path exists ("/" always does).
  bool exists(const std::string& name) const;
  // Names of the children of a group, sorted.
  std::vector<std::string> list(const std::string& group = "/") const;
  std::vector<int64_t> shape_of(const std::string& name) const;
  DType dtype_of(const std::string& name) const;

  // Attributes on a group or dataset ("/" is the root group); setting replaces an existing one.
  void set_attr(const std::string& object, const std::string& key, const std::string& value);
  void set_attr(const std::string& object, const std::string& key, const char* value) {
    set_attr(object, key, std::string(value));
  }
  void set_attr(const std::string& object, const std::string& key, int64_t value);
  void set_attr(const std::string& object, const std::string& key, double value);
  std::string attr_string(const std::string& object, const std::string& key) const;
  int64_t attr_int(const std::string& object, const std::string& key) const;
  // Integer attributes convert.
  double attr_double(const std::string& object, const std::string& key) const;
  bool has_attr(const std::string& object, const std::string& key) const;

  void flush();

 private:
  H5File(int64_t id, std::string path, bool writable)
      : id_(id), path_(std::move(path)), writable_(writable) {}
  void check_writable(const char* what) const;

  int64_t id_ = -1;
  std::string path_;
  bool writable_ = false;
  bool parallel_ = false;
};

}  // namespace strata::io
