// The LSTM recurrence as two TensorFlow ops: the whole time loop in C++, forward and backward.
//
// ZooLstmForward takes gx = x @ kernel + bias for every step (one big matmul, done by the
// caller), the initial state and the recurrent kernel, and runs the T steps: gates =
// gx_t + h @ R, activations, new state. ZooLstmBackward runs backpropagation through time and
// returns the gradient of the gates' pre-activations (d gx), from which the caller gets the
// weight and input gradients as big matmuls. Gates are Keras' i, f, c, o.
//
// Rows of a batch never interact, so the batch is cut into one block per thread of TensorFlow's
// intra-op pool, and each thread runs all steps of its rows with no synchronisation; every step
// is one small Eigen matrix product and the fused gate arithmetic.

#include <algorithm>

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

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Rows = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;             // n rows, any stride
using ConstRows = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;

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
    Eigen::Map<const RowMat> R(r.flat<float>().data(), H, G);

    ForEachBlock(ctx, B, [&](int64_t first, int64_t last) {
      const int64_t n = last - first;
      RowMat z(n, G);
      for (int64_t t = 0; t < T; ++t) {
        const int64_t at = first * T + t;  // row `first`, step t
        ConstRows h_prev = t == 0 ? ConstRows(h0_p + first * H, n, H, Eigen::OuterStride<>(H))
                                  : ConstRows(h_p + (at - 1) * H, n, H,
                                              Eigen::OuterStride<>(T * H));
        ConstRows c_prev = t == 0 ? ConstRows(c0_p + first * H, n, H, Eigen::OuterStride<>(H))
                                  : ConstRows(c_p + (at - 1) * H, n, H,
                                              Eigen::OuterStride<>(T * H));
        z.noalias() = h_prev * R;
        z += ConstRows(gx_p + at * G, n, G, Eigen::OuterStride<>(T * G));
        Rows a(g_p + at * G, n, G, Eigen::OuterStride<>(T * G));
        Rows c_t(c_p + at * H, n, H, Eigen::OuterStride<>(T * H));
        Rows h_t(h_p + at * H, n, H, Eigen::OuterStride<>(T * H));
        a.leftCols(2 * H) = z.leftCols(2 * H).array().logistic();
        a.middleCols(2 * H, H) = z.middleCols(2 * H, H).array().tanh();
        a.rightCols(H) = z.rightCols(H).array().logistic();
        c_t = a.middleCols(H, H).array() * c_prev.array() +
              a.leftCols(H).array() * a.middleCols(2 * H, H).array();
        h_t = a.rightCols(H).array() * c_t.array().tanh();
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
    float* dh0_p = dh0->flat<float>().data();
    float* dc0_p = dc0->flat<float>().data();
    Eigen::Map<const RowMat> R(r.flat<float>().data(), H, G);

    ForEachBlock(ctx, B, [&](int64_t first, int64_t last) {
      const int64_t n = last - first;
      Rows dh_next(dh0_p + first * H, n, H, Eigen::OuterStride<>(H));  // carried back in time
      Rows dc_next(dc0_p + first * H, n, H, Eigen::OuterStride<>(H));
      dh_next.setZero();
      dc_next.setZero();
      RowMat dh_t(n, H), dc_t(n, H), tc(n, H);
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t at = first * T + t;
        const Eigen::OuterStride<> sh(T * H), sg(T * G);
        ConstRows a(g_p + at * G, n, G, sg);
        ConstRows c_prev = t == 0 ? ConstRows(c0_p + first * H, n, H, Eigen::OuterStride<>(H))
                                  : ConstRows(c_p + (at - 1) * H, n, H, sh);
        auto i = a.leftCols(H).array();
        auto f = a.middleCols(H, H).array();
        auto g = a.middleCols(2 * H, H).array();
        auto o = a.rightCols(H).array();
        Rows d(dgx_p + at * G, n, G, sg);
        tc = ConstRows(c_p + at * H, n, H, sh).array().tanh();
        dh_t = ConstRows(dh_p + at * H, n, H, sh) + dh_next;
        dc_t = ConstRows(dc_p + at * H, n, H, sh) + dc_next;
        dc_t.array() += dh_t.array() * o * (1.0f - tc.array().square());
        d.leftCols(H) = dc_t.array() * g * i * (1.0f - i);
        d.middleCols(H, H) = dc_t.array() * c_prev.array() * f * (1.0f - f);
        d.middleCols(2 * H, H) = dc_t.array() * i * (1.0f - g.square());
        d.rightCols(H) = dh_t.array() * tc.array() * o * (1.0f - o);
        dc_next = dc_t.array() * f;
        dh_next.noalias() = d * R.transpose();
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
