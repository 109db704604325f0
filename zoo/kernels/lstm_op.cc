// The LSTM recurrence as two TensorFlow ops: the whole time loop in C++, forward and backward.
//
// ZooLstmForward takes the inputs x, the initial state and the weights (kernel, recurrent
// kernel, bias) and runs the T steps: gates = b + x_t @ kernel + h @ R, activations, new state.
// ZooLstmBackward runs backpropagation through time and returns the gradient of the gates'
// pre-activations (d gx) and of the bias, from which the caller gets the other gradients as big
// matmuls. Gates are Keras' i, f, c, o. Every sequence is time-major ([T, B, ...]), so the rows
// a step reads and writes are contiguous (measured: the backward loop 1.2-1.8x faster than with
// [B, T, ...], the forward the same).
//
// Rows of a batch never interact, so the batch is cut into one block per thread of TensorFlow's
// intra-op pool, and each thread runs all steps of its rows with no synchronisation. A step is
// a register-blocked product written with Eigen's packet primitives (the widest SIMD the build
// targets: AVX-512, AVX2, SSE, NEON, or plain floats), fused with the gate arithmetic: kernel
// and R are packed once per call so that the four gates of W units (W = floats per packet) are
// adjacent, and a few rows' pre-activations of those units stay in registers from the bias and
// the product [x_t, h] @ [kernel; R] to the new h and c. The backward step computes d gx for a
// few rows, then their dh_{t-1} = d @ R^T from a packed R^T while those rows are in cache.
// Activations are Eigen's own (the functions its `.tanh()` and `.logistic()` use).

#include <algorithm>
#include <type_traits>
#include <vector>

#include "Eigen/Core"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

namespace ei = Eigen::internal;
using Packet = ei::packet_traits<float>::type;
constexpr int64_t W = ei::unpacket_traits<Packet>::size;
// Rows per register block: MR rows x 4 packets of accumulators must fit the vector registers
// (32 with AVX-512, 16 with AVX2 or SSE) beside the 4 packets of R and a broadcast.
constexpr int kRows = W >= 16 ? 6 : 2;  // 6 measured faster than 4 with AVX-512

Packet Load(const float* p, int64_t n) {
  return n == W ? ei::ploadu<Packet>(p) : ei::ploadu_partial<Packet>(p, n);
}

void Store(float* p, const Packet& x, int64_t n) {
  if (n == W) {
    ei::pstoreu(p, x);
  } else {
    ei::pstoreu_partial(p, x, n);
  }
}

Packet Sigmoid(const Packet& x) { return ei::scalar_logistic_op<float>().packetOp(x); }
Packet Tanh(const Packet& x) { return ei::ptanh(x); }

// A matrix of rows at a stride: element (r, j) is p[r * ld + j].
template <typename T>
struct Rows {
  T* p;
  int64_t ld;
  T* operator[](int64_t r) const { return p + r * ld; }
};
using In = Rows<const float>;
using Out = Rows<float>;

// Calls fn(std::integral_constant<int, MR>, first_row) for blocks of kRows rows, then the rest;
// a rest under 4 rows is joined to the last full block and the two split evenly (6 + 2 rows run
// as 4 + 4: a block of few rows loads the weights for little arithmetic).
template <typename Fn>
void ForRowBlocks(int64_t n, Fn fn) {
  auto rest = [&](int64_t m, int64_t r) {
    switch (m) {
      case 1: return fn(std::integral_constant<int, 1>(), r);
      case 2: return fn(std::integral_constant<int, 2>(), r);
      case 3: return fn(std::integral_constant<int, 3>(), r);
      case 4: return fn(std::integral_constant<int, 4>(), r);
      case 5: return fn(std::integral_constant<int, 5>(), r);
      default: return;
    }
  };
  int64_t r = 0;
  const int64_t tail = n % kRows;
  const int64_t full = n / kRows - (kRows > 4 && tail > 0 && tail < 4 && n > kRows);
  for (int64_t b = 0; b < full; ++b, r += kRows) fn(std::integral_constant<int, kRows>(), r);
  const int64_t left = n - r;  // under kRows, or kRows + a short tail
  if (left > kRows) {
    rest(left / 2, r);
    rest(left - left / 2, r + left / 2);
  } else {
    rest(left, r);
  }
}

// The weights packed for both products. Forward, [kernel; R] ([D + H, 4H]): for unit block u
// (units u*W ..), row k, gate q: the W values [kernel; R][k, q*H + u*W + l], zero past H.
// Backward (R^T, for dh = d @ R^T): for block b of 4 packets of output units, row kk < 4H of
// R^T: the 4*W values R[j, kk] for j = b*4W + l, zero past H.
struct Packed {
  int64_t D, H, blocks, tblocks;
  std::vector<float> fwd, bwd;

  Packed(const float* kernel, const float* r, int64_t d, int64_t h, bool forward)
      : D(d), H(h), blocks((h + W - 1) / W), tblocks((h + 4 * W - 1) / (4 * W)) {
    const int64_t G = 4 * H, K = D + H;
    if (forward) {
      fwd.assign(blocks * K * 4 * W, 0.0f);
      for (int64_t u = 0; u < blocks; ++u)
        for (int64_t k = 0; k < K; ++k)
          for (int64_t q = 0; q < 4; ++q)
            for (int64_t l = 0; l < W && u * W + l < H; ++l)
              fwd[((u * K + k) * 4 + q) * W + l] =
                  (k < D ? kernel + k * G : r + (k - D) * G)[q * H + u * W + l];
    } else {
      bwd.assign(tblocks * G * 4 * W, 0.0f);
      for (int64_t b = 0; b < tblocks; ++b)
        for (int64_t kk = 0; kk < G; ++kk)
          for (int64_t l = 0; l < 4 * W && b * 4 * W + l < H; ++l)
            bwd[(b * G + kk) * 4 * W + l] = r[(b * 4 * W + l) * G + kk];
    }
  }
  const float* Fwd(int64_t u) const { return fwd.data() + u * (D + H) * 4 * W; }
  const float* Bwd(int64_t b) const { return bwd.data() + b * 4 * H * 4 * W; }
};

// acc[r][v] += sum_k x[r, k] * panel[k, v*W ..] over k < K, for MR rows and 4 packets.
template <int MR>
inline void Accumulate(const float* panel, In x, int64_t K, Packet (&acc)[MR][4]) {
  for (int64_t k = 0; k < K; ++k, panel += 4 * W) {
    const Packet b0 = ei::ploadu<Packet>(panel), b1 = ei::ploadu<Packet>(panel + W);
    const Packet b2 = ei::ploadu<Packet>(panel + 2 * W), b3 = ei::ploadu<Packet>(panel + 3 * W);
    for (int r = 0; r < MR; ++r) {
      const Packet a = ei::pset1<Packet>(x[r][k]);
      acc[r][0] = ei::pmadd(a, b0, acc[r][0]);
      acc[r][1] = ei::pmadd(a, b1, acc[r][1]);
      acc[r][2] = ei::pmadd(a, b2, acc[r][2]);
      acc[r][3] = ei::pmadd(a, b3, acc[r][3]);
    }
  }
}

// One forward step for MR rows: gates = activations(b + x_t @ kernel + h_prev @ R), c, h.
template <int MR>
void ForwardRows(const Packed& P, const float* bias, In x, In h_prev, In c_prev, Out a, Out c,
                 Out h) {
  const int64_t D = P.D, H = P.H;
  for (int64_t u = 0; u < P.blocks; ++u) {
    const int64_t j = u * W, n = std::min(W, H - j);
    Packet acc[MR][4];
    for (int v = 0; v < 4; ++v) {
      const Packet b = Load(bias + v * H + j, n);
      for (int r = 0; r < MR; ++r) acc[r][v] = b;
    }
    Accumulate<MR>(P.Fwd(u), x, D, acc);
    Accumulate<MR>(P.Fwd(u) + D * 4 * W, h_prev, H, acc);
    for (int r = 0; r < MR; ++r) {
      const Packet i = Sigmoid(acc[r][0]), f = Sigmoid(acc[r][1]);
      const Packet g = Tanh(acc[r][2]), o = Sigmoid(acc[r][3]);
      const Packet c_t = ei::pmadd(f, Load(c_prev[r] + j, n), ei::pmul(i, g));
      Store(a[r] + j, i, n);
      Store(a[r] + H + j, f, n);
      Store(a[r] + 2 * H + j, g, n);
      Store(a[r] + 3 * H + j, o, n);
      Store(c[r] + j, c_t, n);
      Store(h[r] + j, ei::pmul(o, Tanh(c_t)), n);
    }
  }
}

// One backward step for MR rows: d (the gates' pre-activation gradient) from the gates, the
// cell states and the incoming gradients, added to db; dc_next = dc_t * f; then
// dh_next = d @ R^T.
template <int MR>
void BackwardRows(const Packed& P, In a, In c_t, In c_prev, In dh_in, In dc_in, Out dh_next,
                  Out dc_next, Out d, float* db) {
  const int64_t H = P.H;
  const Packet one = ei::pset1<Packet>(1.0f);
  for (int r = 0; r < MR; ++r) {
    for (int64_t j = 0; j < H; j += W) {
      const int64_t n = std::min(W, H - j);
      const Packet i = Load(a[r] + j, n), f = Load(a[r] + H + j, n);
      const Packet g = Load(a[r] + 2 * H + j, n), o = Load(a[r] + 3 * H + j, n);
      const Packet tc = Tanh(Load(c_t[r] + j, n));
      const Packet dh = ei::padd(Load(dh_in[r] + j, n), Load(dh_next[r] + j, n));
      Packet dc = ei::padd(Load(dc_in[r] + j, n), Load(dc_next[r] + j, n));
      dc = ei::pmadd(ei::pmul(dh, o), ei::psub(one, ei::pmul(tc, tc)), dc);
      const Packet dq[4] = {
          ei::pmul(ei::pmul(dc, g), ei::pmul(i, ei::psub(one, i))),
          ei::pmul(ei::pmul(dc, Load(c_prev[r] + j, n)), ei::pmul(f, ei::psub(one, f))),
          ei::pmul(ei::pmul(dc, i), ei::psub(one, ei::pmul(g, g))),
          ei::pmul(ei::pmul(dh, tc), ei::pmul(o, ei::psub(one, o)))};
      for (int q = 0; q < 4; ++q) {
        Store(d[r] + q * H + j, dq[q], n);
        Store(db + q * H + j, ei::padd(Load(db + q * H + j, n), dq[q]), n);
      }
      Store(dc_next[r] + j, ei::pmul(dc, f), n);
    }
  }
  for (int64_t b = 0; b < P.tblocks; ++b) {
    Packet acc[MR][4];
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < 4; ++v) acc[r][v] = ei::pset1<Packet>(0.0f);
    Accumulate<MR>(P.Bwd(b), In{d.p, d.ld}, 4 * H, acc);
    for (int r = 0; r < MR; ++r)
      for (int64_t v = 0; v < 4; ++v) {
        const int64_t j = (4 * b + v) * W;
        if (j < H) Store(dh_next[r] + j, acc[r][v], std::min(W, H - j));
      }
  }
}

// The batch cut into one block of rows per thread of TensorFlow's intra-op pool.
struct Blocks {
  int64_t count, size;
  Blocks(OpKernelContext* ctx, int64_t batch) {
    const int threads = ctx->device()->tensorflow_cpu_worker_threads()->workers->NumThreads();
    count = std::max<int64_t>(1, std::min<int64_t>(threads, batch / 4));
    size = (batch + count - 1) / count;
  }
};

// Runs fn(block, first_row, last_row) for every block, in parallel.
template <typename Fn>
void ForEachBlock(OpKernelContext* ctx, int64_t batch, const Blocks& blocks, Fn fn) {
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  pool->ParallelFor(blocks.count,
                    tsl::thread::ThreadPool::SchedulingParams(
                        tsl::thread::ThreadPool::SchedulingStrategy::kFixedBlockSize,
                        std::nullopt, 1),
                    [&](int64_t begin, int64_t end) {
                      for (int64_t b = begin; b < end; ++b) {
                        const int64_t first = b * blocks.size;
                        const int64_t last = std::min(batch, first + blocks.size);
                        if (first < last) fn(b, first, last);
                      }
                    });
}

class ZooLstmForwardOp : public OpKernel {
 public:
  explicit ZooLstmForwardOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& h0 = ctx->input(1);
    const Tensor& c0 = ctx->input(2);
    const Tensor& kernel = ctx->input(3);
    const Tensor& r = ctx->input(4);
    const Tensor& bias = ctx->input(5);
    OP_REQUIRES(ctx, x.dims() == 3 && r.dims() == 2 && r.dim_size(1) == 4 * r.dim_size(0),
                tensorflow::errors::InvalidArgument("x must be [T, B, D], R [H, 4H]"));
    const int64_t T = x.dim_size(0), B = x.dim_size(1), D = x.dim_size(2);
    const int64_t H = r.dim_size(0), G = 4 * H;
    OP_REQUIRES(ctx, kernel.shape() == TensorShape({D, G}) && bias.shape() == TensorShape({G}),
                tensorflow::errors::InvalidArgument("kernel must be [D, 4H], bias [4H]"));
    OP_REQUIRES(ctx, h0.shape() == TensorShape({B, H}) && c0.shape() == TensorShape({B, H}),
                tensorflow::errors::InvalidArgument("h0 and c0 must be [B, H]"));
    Tensor *h, *c, *gates;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({T, B, H}), &h));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({T, B, H}), &c));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({T, B, G}), &gates));
    if (B == 0 || T == 0) return;
    const float* x_p = x.flat<float>().data();
    const float* h0_p = h0.flat<float>().data();
    const float* c0_p = c0.flat<float>().data();
    const float* b_p = bias.flat<float>().data();
    float* h_p = h->flat<float>().data();
    float* c_p = c->flat<float>().data();
    float* g_p = gates->flat<float>().data();
    const Packed P(kernel.flat<float>().data(), r.flat<float>().data(), D, H, /*forward=*/true);

    ForEachBlock(ctx, B, Blocks(ctx, B), [&](int64_t, int64_t first, int64_t last) {
      for (int64_t t = 0; t < T; ++t) {
        ForRowBlocks(last - first, [&](auto mr, int64_t row) {
          const int64_t b = first + row, at = t * B + b;  // step t, row b
          const In h_prev = t == 0 ? In{h0_p + b * H, H} : In{h_p + (at - B) * H, H};
          const In c_prev = t == 0 ? In{c0_p + b * H, H} : In{c_p + (at - B) * H, H};
          ForwardRows<decltype(mr)::value>(P, b_p, In{x_p + at * D, D}, h_prev, c_prev,
                                           Out{g_p + at * G, G}, Out{c_p + at * H, H},
                                           Out{h_p + at * H, H});
        });
      }
    });
  }
};

class ZooLstmBackwardOp : public OpKernel {
 public:
  explicit ZooLstmBackwardOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& r = ctx->input(0);
    const Tensor& c0 = ctx->input(1);
    const Tensor& c = ctx->input(2);
    const Tensor& gates = ctx->input(3);
    const Tensor& dh = ctx->input(4);
    const Tensor& dc = ctx->input(5);
    const int64_t T = c.dim_size(0), B = c.dim_size(1), H = r.dim_size(0), G = 4 * H;
    OP_REQUIRES(ctx, gates.shape() == TensorShape({T, B, G}) && dh.shape() == c.shape() &&
                         dc.shape() == c.shape() && c0.shape() == TensorShape({B, H}),
                tensorflow::errors::InvalidArgument("shapes of ZooLstmBackward disagree"));
    Tensor *dgx, *dh0, *dc0, *db;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({T, B, G}), &dgx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({B, H}), &dh0));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({B, H}), &dc0));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({G}), &db));
    float* db_p = db->flat<float>().data();
    std::fill(db_p, db_p + G, 0.0f);
    if (B == 0) return;
    const float* c0_p = c0.flat<float>().data();
    const float* c_p = c.flat<float>().data();
    const float* g_p = gates.flat<float>().data();
    const float* dh_p = dh.flat<float>().data();
    const float* dc_p = dc.flat<float>().data();
    float* dgx_p = dgx->flat<float>().data();
    float* dh0_p = dh0->flat<float>().data();  // dh and dc carried back in time, per row
    float* dc0_p = dc0->flat<float>().data();
    std::fill(dh0_p, dh0_p + B * H, 0.0f);
    std::fill(dc0_p, dc0_p + B * H, 0.0f);
    const Packed P(nullptr, r.flat<float>().data(), 0, H, /*forward=*/false);
    const Blocks blocks(ctx, B);
    std::vector<float> db_parts(blocks.count * G, 0.0f);  // each block's share of db

    ForEachBlock(ctx, B, blocks, [&](int64_t block, int64_t first, int64_t last) {
      for (int64_t t = T - 1; t >= 0; --t) {
        ForRowBlocks(last - first, [&](auto mr, int64_t row) {
          const int64_t b = first + row, at = t * B + b;
          const In c_prev = t == 0 ? In{c0_p + b * H, H} : In{c_p + (at - B) * H, H};
          BackwardRows<decltype(mr)::value>(P, In{g_p + at * G, G}, In{c_p + at * H, H}, c_prev,
                                            In{dh_p + at * H, H}, In{dc_p + at * H, H},
                                            Out{dh0_p + b * H, H}, Out{dc0_p + b * H, H},
                                            Out{dgx_p + at * G, G}, db_parts.data() + block * G);
        });
      }
    });
    for (int64_t b = 0; b < blocks.count; ++b)
      for (int64_t k = 0; k < G; ++k) db_p[k] += db_parts[b * G + k];
  }
};

tensorflow::Status SameAs(InferenceContext* c, int input, int output) {
  c->set_output(output, c->input(input));
  return tensorflow::OkStatus();
}

}  // namespace

REGISTER_OP("ZooLstmForward")
    .Input("x: float")
    .Input("h0: float")
    .Input("c0: float")
    .Input("kernel: float")
    .Input("recurrent_kernel: float")
    .Input("bias: float")
    .Output("h: float")
    .Output("c: float")
    .Output("gates: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x, r, seq, gates;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &x));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(4), 2, &r));
      TF_RETURN_IF_ERROR(c->ReplaceDim(x, 2, c->Dim(r, 0), &seq));
      TF_RETURN_IF_ERROR(c->ReplaceDim(x, 2, c->Dim(r, 1), &gates));
      c->set_output(0, seq);
      c->set_output(1, seq);
      c->set_output(2, gates);
      return tensorflow::OkStatus();
    });

REGISTER_OP("ZooLstmBackward")
    .Input("recurrent_kernel: float")
    .Input("c0: float")
    .Input("c: float")
    .Input("gates: float")
    .Input("dh: float")
    .Input("dc: float")
    .Output("dgx: float")
    .Output("dh0: float")
    .Output("dc0: float")
    .Output("db: float")
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(SameAs(c, 3, 0));
      TF_RETURN_IF_ERROR(SameAs(c, 1, 1));
      TF_RETURN_IF_ERROR(SameAs(c, 1, 2));
      c->set_output(3, c->Vector(c->Dim(c->input(0), 1)));
      return tensorflow::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("ZooLstmForward").Device(tensorflow::DEVICE_CPU), ZooLstmForwardOp);
REGISTER_KERNEL_BUILDER(Name("ZooLstmBackward").Device(tensorflow::DEVICE_CPU),
                        ZooLstmBackwardOp);
