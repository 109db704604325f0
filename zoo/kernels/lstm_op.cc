// The LSTM recurrence as two TensorFlow ops: the whole time loop in C++, forward and backward.
//
// ZooLstmForward takes gx = x @ kernel + bias for every step (one big matmul, done by the
// caller), the initial state and the recurrent kernel, and runs the T steps: gates =
// gx_t + h @ R, activations, new state. ZooLstmBackward runs backpropagation through time and
// returns the gradient of the gates' pre-activations (d gx), from which the caller gets the
// weight and input gradients as big matmuls. Gates are Keras' i, f, c, o.
//
// Rows of a batch never interact, so the batch is cut into one block per thread of TensorFlow's
// intra-op pool, and each thread runs all steps of its rows with no synchronisation. A step is
// a register-blocked product written with Eigen's packet primitives (the widest SIMD the build
// targets: AVX-512, AVX2, SSE, NEON, or plain floats), fused with the gate arithmetic: R is
// packed once per call so that the four gates of W units (W = floats per packet) are adjacent,
// and a few rows' pre-activations of those units stay in registers from the product to the new
// h and c. The backward step computes d gx for a few rows, then their dh_{t-1} = d @ R^T from a
// packed R^T while those rows are still in cache. Activations are Eigen's own (the functions
// its `.tanh()` and `.logistic()` use), so results agree with Eigen-based code to rounding.

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
constexpr int kRows = W >= 16 ? 6 : 2;

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

// Calls fn(std::integral_constant<int, MR>, first_row) for blocks of kRows rows, then the rest.
template <typename Fn>
void ForRowBlocks(int64_t n, Fn fn) {
  int64_t r = 0;
  for (; r + kRows <= n; r += kRows) fn(std::integral_constant<int, kRows>(), r);
  switch (n - r) {
    case 1: return fn(std::integral_constant<int, 1>(), r);
    case 2: return fn(std::integral_constant<int, 2>(), r);
    case 3: return fn(std::integral_constant<int, 3>(), r);
    case 4: return fn(std::integral_constant<int, 4>(), r);
    case 5: return fn(std::integral_constant<int, 5>(), r);
    default: return;
  }
}

// The recurrent kernel R [H, 4H] packed for both products. Forward: for unit block u (units
// u*W ..), row k of R, gate q: the W values R[k, q*H + u*W + l], zero past H. Backward (R^T,
// for dh = d @ R^T): for block b of 4 packets of output units, row kk of R^T (kk < 4H): the
// 4*W values R[j, kk] for j = b*4W + l, zero past H.
struct PackedR {
  int64_t H, blocks, tblocks;
  std::vector<float> fwd, bwd;

  PackedR(const float* r, int64_t h, bool forward)
      : H(h), blocks((h + W - 1) / W), tblocks((h + 4 * W - 1) / (4 * W)) {
    const int64_t G = 4 * H;
    if (forward) {
      fwd.assign(blocks * H * 4 * W, 0.0f);
      for (int64_t u = 0; u < blocks; ++u)
        for (int64_t k = 0; k < H; ++k)
          for (int64_t q = 0; q < 4; ++q)
            for (int64_t l = 0; l < W && u * W + l < H; ++l)
              fwd[((u * H + k) * 4 + q) * W + l] = r[k * G + q * H + u * W + l];
    } else {
      bwd.assign(tblocks * G * 4 * W, 0.0f);
      for (int64_t b = 0; b < tblocks; ++b)
        for (int64_t kk = 0; kk < G; ++kk)
          for (int64_t l = 0; l < 4 * W && b * 4 * W + l < H; ++l)
            bwd[(b * G + kk) * 4 * W + l] = r[(b * 4 * W + l) * G + kk];
    }
  }
  const float* Fwd(int64_t u) const { return fwd.data() + u * H * 4 * W; }
  const float* Bwd(int64_t b) const { return bwd.data() + b * 4 * H * 4 * W; }
};

// acc[r][v] = sum_k x[r, k] * panel[k, v*W ..] over k < K, for MR rows and 4 packets.
template <int MR>
inline void Product(const float* panel, In x, int64_t K, Packet (&acc)[MR][4]) {
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < 4; ++v) acc[r][v] = ei::pset1<Packet>(0.0f);
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

// One forward step for MR rows: gates = activations(gx + h_prev @ R), c, h.
template <int MR>
void ForwardRows(const PackedR& R, In gx, In h_prev, In c_prev, Out a, Out c, Out h) {
  const int64_t H = R.H;
  for (int64_t u = 0; u < R.blocks; ++u) {
    const int64_t j = u * W, n = std::min(W, H - j);
    Packet acc[MR][4];
    Product<MR>(R.Fwd(u), h_prev, H, acc);
    for (int r = 0; r < MR; ++r) {
      const Packet i = Sigmoid(ei::padd(acc[r][0], Load(gx[r] + j, n)));
      const Packet f = Sigmoid(ei::padd(acc[r][1], Load(gx[r] + H + j, n)));
      const Packet g = Tanh(ei::padd(acc[r][2], Load(gx[r] + 2 * H + j, n)));
      const Packet o = Sigmoid(ei::padd(acc[r][3], Load(gx[r] + 3 * H + j, n)));
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
// cell states and the incoming gradients; dc_next = dc_t * f; then dh_next = d @ R^T.
template <int MR>
void BackwardRows(const PackedR& R, In a, In c_t, In c_prev, In dh_in, In dc_in, Out dh_next,
                  Out dc_next, Out d) {
  const int64_t H = R.H;
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
      Store(d[r] + j, ei::pmul(ei::pmul(dc, g), ei::pmul(i, ei::psub(one, i))), n);
      const Packet df = ei::pmul(dc, Load(c_prev[r] + j, n));
      Store(d[r] + H + j, ei::pmul(df, ei::pmul(f, ei::psub(one, f))), n);
      Store(d[r] + 2 * H + j, ei::pmul(ei::pmul(dc, i), ei::psub(one, ei::pmul(g, g))), n);
      Store(d[r] + 3 * H + j, ei::pmul(ei::pmul(dh, tc), ei::pmul(o, ei::psub(one, o))), n);
      Store(dc_next[r] + j, ei::pmul(dc, f), n);
    }
  }
  for (int64_t b = 0; b < R.tblocks; ++b) {
    Packet acc[MR][4];
    Product<MR>(R.Bwd(b), In{d.p, d.ld}, 4 * H, acc);
    for (int r = 0; r < MR; ++r)
      for (int64_t v = 0; v < 4; ++v) {
        const int64_t j = (4 * b + v) * W;
        if (j < H) Store(dh_next[r] + j, acc[r][v], std::min(W, H - j));
      }
  }
}

// Runs fn(first_row, last_row) on blocks of the batch, one block per intra-op thread.
template <typename Fn>
void ForEachBlock(OpKernelContext* ctx, int64_t batch, Fn fn) {
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(pool->NumThreads(), batch / 4));
  const int64_t size = (batch + blocks - 1) / blocks;
  pool->ParallelFor(blocks, tsl::thread::ThreadPool::SchedulingParams(
                                tsl::thread::ThreadPool::SchedulingStrategy::kFixedBlockSize,
                                std::nullopt, 1),
                    [&](int64_t begin, int64_t end) {
                      for (int64_t b = begin; b < end; ++b) {
                        const int64_t first = b * size, last = std::min(batch, first + size);
                        if (first < last) fn(first, last);
                      }
                    });
}

class ZooLstmForwardOp : public OpKernel {
 public:
  explicit ZooLstmForwardOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& gx = ctx->input(0);
    const Tensor& h0 = ctx->input(1);
    const Tensor& c0 = ctx->input(2);
    const Tensor& r = ctx->input(3);
    OP_REQUIRES(ctx, gx.dims() == 3 && r.dims() == 2 && gx.dim_size(2) == r.dim_size(1) &&
                         r.dim_size(1) == 4 * r.dim_size(0),
                tensorflow::errors::InvalidArgument("gx must be [B, T, 4H], R [H, 4H]"));
    const int64_t B = gx.dim_size(0), T = gx.dim_size(1), H = r.dim_size(0), G = 4 * H;
    OP_REQUIRES(ctx, h0.shape() == TensorShape({B, H}) && c0.shape() == TensorShape({B, H}),
                tensorflow::errors::InvalidArgument("h0 and c0 must be [B, H]"));
    Tensor *h, *c, *gates;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({B, T, H}), &h));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({B, T, H}), &c));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({B, T, G}), &gates));
    if (B == 0 || T == 0) return;
    const float* gx_p = gx.flat<float>().data();
    const float* h0_p = h0.flat<float>().data();
    const float* c0_p = c0.flat<float>().data();
    float* h_p = h->flat<float>().data();
    float* c_p = c->flat<float>().data();
    float* g_p = gates->flat<float>().data();
    const PackedR R(r.flat<float>().data(), H, /*forward=*/true);

    ForEachBlock(ctx, B, [&](int64_t first, int64_t last) {
      for (int64_t t = 0; t < T; ++t) {
        ForRowBlocks(last - first, [&](auto mr, int64_t row) {
          const int64_t b = first + row, at = b * T + t;  // row b, step t
          const In h_prev = t == 0 ? In{h0_p + b * H, H} : In{h_p + (at - 1) * H, T * H};
          const In c_prev = t == 0 ? In{c0_p + b * H, H} : In{c_p + (at - 1) * H, T * H};
          ForwardRows<decltype(mr)::value>(R, In{gx_p + at * G, T * G}, h_prev, c_prev,
                                           Out{g_p + at * G, T * G}, Out{c_p + at * H, T * H},
                                           Out{h_p + at * H, T * H});
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
    const int64_t B = c.dim_size(0), T = c.dim_size(1), H = r.dim_size(0), G = 4 * H;
    OP_REQUIRES(ctx, gates.shape() == TensorShape({B, T, G}) && dh.shape() == c.shape() &&
                         dc.shape() == c.shape() && c0.shape() == TensorShape({B, H}),
                tensorflow::errors::InvalidArgument("shapes of ZooLstmBackward disagree"));
    Tensor *dgx, *dh0, *dc0;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({B, T, G}), &dgx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({B, H}), &dh0));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({B, H}), &dc0));
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
    const PackedR R(r.flat<float>().data(), H, /*forward=*/false);

    ForEachBlock(ctx, B, [&](int64_t first, int64_t last) {
      for (int64_t t = T - 1; t >= 0; --t) {
        ForRowBlocks(last - first, [&](auto mr, int64_t row) {
          const int64_t b = first + row, at = b * T + t;
          const In c_prev = t == 0 ? In{c0_p + b * H, H} : In{c_p + (at - 1) * H, T * H};
          BackwardRows<decltype(mr)::value>(
              R, In{g_p + at * G, T * G}, In{c_p + at * H, T * H}, c_prev,
              In{dh_p + at * H, T * H}, In{dc_p + at * H, T * H}, Out{dh0_p + b * H, H},
              Out{dc0_p + b * H, H}, Out{dgx_p + at * G, T * G});
        });
      }
    });
  }
};

tensorflow::Status SameAs(InferenceContext* c, int input, int output) {
  c->set_output(output, c->input(input));
  return tensorflow::OkStatus();
}

}  // namespace

REGISTER_OP("ZooLstmForward")
    .Input("gx: float")
    .Input("h0: float")
    .Input("c0: float")
    .Input("recurrent_kernel: float")
    .Output("h: float")
    .Output("c: float")
    .Output("gates: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle gx, r, seq;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &gx));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 2, &r));
      TF_RETURN_IF_ERROR(c->ReplaceDim(gx, 2, c->Dim(r, 0), &seq));
      c->set_output(0, seq);
      c->set_output(1, seq);
      c->set_output(2, gx);
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
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(SameAs(c, 3, 0));
      TF_RETURN_IF_ERROR(SameAs(c, 1, 1));
      return SameAs(c, 1, 2);
    });

REGISTER_KERNEL_BUILDER(Name("ZooLstmForward").Device(tensorflow::DEVICE_CPU), ZooLstmForwardOp);
REGISTER_KERNEL_BUILDER(Name("ZooLstmBackward").Device(tensorflow::DEVICE_CPU),
                        ZooLstmBackwardOp);
